//! The `clm` binary as users run it: `clm up` with its client commands, and the four
//! services as separate `clm serve` processes, traced and scraped.
#![allow(unreachable_pub)]

mod faults;
mod otlp;
mod telemetry;
mod token;
mod up;

const CLM: &str = env!("CARGO_BIN_EXE_clm");

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
