//! `switchyard-baseline [ADDR] [--worker-threads N]`: the minimal broadcast WebSocket
//! server the load tool compares Switchyard with (see `switchyard_bench::baseline`).

use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 8090).into();
    let mut threads = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--worker-threads" => args
                .next()
                .and_then(|n| n.parse().ok())
                .map(|n| threads = n),
            a => a.parse().ok().map(|a| addr = a),
        };
        if parsed.is_none() {
            eprintln!("usage: switchyard-baseline [ADDR] [--worker-threads N]");
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
            "switchyard-baseline on ws://{} (pid {})",
            listener.local_addr()?,
            std::process::id()
        );
        switchyard_bench::baseline::serve(listener).await;
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
