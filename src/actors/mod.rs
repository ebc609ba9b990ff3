//! The actors. Worker node: [`executor`] (admission, held results,
//! metrics) and [`simulation`] (the CPU-bound pool).

pub mod executor;
pub mod simulation;
