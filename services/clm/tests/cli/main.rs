//! The `clm` binary as users run it: `clm up` with its client commands, and the four
//! services as separate `clm serve` processes, traced and scraped.
#![allow(unreachable_pub)]

mod faults;
mod otlp;
mod telemetry;
mod token;
mod up;

const CLM: &str = env!("CARGO_BIN_EXE_clm");

use clm_testkit::free_port;
