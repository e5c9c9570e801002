//! `switchyard-baseline [ADDR] [--worker-threads N] [--stack tungstenite|tokio-websockets]`:
//! the minimal broadcast WebSocket server the load tool compares Switchyard with (see
//! `switchyard_bench::baseline`). `--stack` picks the WebSocket implementation
//! (tokio-tungstenite, Switchyard's, by default).

use std::net::SocketAddr;
use std::process::ExitCode;

use switchyard_bench::baseline::Stack;

const USAGE: &str =
    "usage: switchyard-baseline [ADDR] [--worker-threads N] [--stack tungstenite|tokio-websockets]";

fn main() -> ExitCode {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 8090).into();
    let mut threads = 0usize;
    let mut stack = Stack::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--worker-threads" => args
                .next()
                .and_then(|n| n.parse().ok())
                .map(|n| threads = n),
            "--stack" => args.next().and_then(|s| s.parse().ok()).map(|s| stack = s),
            a => a.parse().ok().map(|a| addr = a),
        };
        if parsed.is_none() {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard-baseline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // The same listen backlog as Switchyard's listeners.
        let listener = socket.listen(4096)?;
        println!(
            "switchyard-baseline on ws://{} ({stack:?}, pid {})",
            listener.local_addr()?,
            std::process::id()
        );
        switchyard_bench::baseline::serve_on(listener, stack).await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
