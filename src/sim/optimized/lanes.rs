//! Two f64 lanes ([`Lanes`]): SSE2 registers on x86-64, plain arrays
//! elsewhere and in the tests, the same IEEE operations either way.

/// Two f64 lanes and the few IEEE operations the pair loop needs, each
/// applied lane by lane (so an implementation cannot change a bit).
/// Masks are lanes with every bit set (true) or clear (false).
pub(super) trait Lanes: Copy {
    fn splat(v: f64) -> Self;
    /// # Safety
    /// `p` is valid for reads.
    unsafe fn load(p: *const [f64; 2]) -> Self;
    /// # Safety
    /// `p` is valid for writes.
    unsafe fn store(self, p: *mut [f64; 2]);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// Bitwise and, with a mask.
    fn and(self, mask: Self) -> Self;
    /// Mask of `self < o`.
    fn lt(self, o: Self) -> Self;
    /// `[self[0], o[0]]`.
    fn lows(self, o: Self) -> Self;
    /// `[self[1], o[1]]`.
    fn highs(self, o: Self) -> Self;
    fn to_array(self) -> [f64; 2];
    /// The sign bits of a mask: bit 0 for lane 0, bit 1 for lane 1.
    fn mask_bits(self) -> usize;
}

/// Lanes in an SSE2 register: one instruction per operation.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Sse2(pub(super) std::arch::x86_64::__m128d);

// SSE2 is part of the x86-64 baseline, so these intrinsics are always
// available; newer compilers consider the register-only ones safe, older
// ones (the crate's minimum Rust) need the `unsafe` blocks.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
impl Lanes for Sse2 {
    #[inline(always)]
    fn splat(v: f64) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_set1_pd(v) })
    }
    #[inline(always)]
    unsafe fn load(p: *const [f64; 2]) -> Self {
        Self(std::arch::x86_64::_mm_loadu_pd(p.cast()))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut [f64; 2]) {
        std::arch::x86_64::_mm_storeu_pd(p.cast(), self.0)
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_add_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_sub_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_mul_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_div_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn and(self, mask: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_and_pd(self.0, mask.0) })
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_cmplt_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn lows(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_unpacklo_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn highs(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_unpackhi_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 2] {
        let mut out = [0.0; 2];
        // SAFETY: `out` is two f64s.
        unsafe { std::arch::x86_64::_mm_storeu_pd(out.as_mut_ptr(), self.0) };
        out
    }
    #[inline(always)]
    fn mask_bits(self) -> usize {
        // SAFETY: SSE2 is baseline on x86-64.
        (unsafe { std::arch::x86_64::_mm_movemask_pd(self.0) }) as usize
    }
}

/// Lanes as two plain f64s: what other architectures run, and what the
/// tests check [`Sse2`] against.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[derive(Clone, Copy)]
pub(super) struct Portable(pub(super) [f64; 2]);

#[cfg(any(test, not(target_arch = "x86_64")))]
impl Portable {
    #[inline(always)]
    fn map(self, o: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self([f(self.0[0], o.0[0]), f(self.0[1], o.0[1])])
    }
}

#[cfg(any(test, not(target_arch = "x86_64")))]
impl Lanes for Portable {
    #[inline(always)]
    fn splat(v: f64) -> Self {
        Self([v, v])
    }
    #[inline(always)]
    unsafe fn load(p: *const [f64; 2]) -> Self {
        Self(*p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut [f64; 2]) {
        *p = self.0
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.map(o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.map(o, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.map(o, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.map(o, |a, b| a / b)
    }
    #[inline(always)]
    fn and(self, mask: Self) -> Self {
        self.map(mask, |a, m| f64::from_bits(a.to_bits() & m.to_bits()))
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        self.map(o, |a, b| f64::from_bits(if a < b { u64::MAX } else { 0 }))
    }
    #[inline(always)]
    fn lows(self, o: Self) -> Self {
        Self([self.0[0], o.0[0]])
    }
    #[inline(always)]
    fn highs(self, o: Self) -> Self {
        Self([self.0[1], o.0[1]])
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 2] {
        self.0
    }
    #[inline(always)]
    fn mask_bits(self) -> usize {
        (self.0[0].to_bits() >> 63) as usize | ((self.0[1].to_bits() >> 63) as usize) << 1
    }
}
