/*
 * A stand-in bcryptprimitives.dll for running orquesta.exe under Wine in
 * CI only (.ci/windows.sh builds it and puts it beside the .exe; it is
 * never shipped). Rust's standard library on Windows takes its random
 * bytes from ProcessPrng in bcryptprimitives.dll (since Rust 1.78), and
 * Debian's Wine 8.0 has no such DLL, so the program would not even load.
 * Real Windows (10 and later) has the DLL; this one answers ProcessPrng
 * with RtlGenRandom (SystemFunction036 in advapi32), which Wine does have.
 */
#include <windows.h>

/* advapi32's RtlGenRandom, exported under its real name */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Fills `data` with `length` random bytes; TRUE on success, as the real
 * ProcessPrng (which is documented never to fail). RtlGenRandom takes a
 * 32-bit length, so a larger request is filled in pieces. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG piece = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, piece)) {
            return FALSE;
        }
        data += piece;
        length -= piece;
    }
    return TRUE;
}
