//! Waiting for the signals that ask a process to stop: SIGTERM or Ctrl-C
//! (SIGINT) on Unix; Ctrl-C or Ctrl-Break on Windows (Ctrl-Break is what
//! `up` sends its workers, see [`crate::util::platform::ask_to_stop`]).

/// Resolves on the first request to stop.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
        either(term.recv(), actix_rt::signal::ctrl_c()).await;
    }
    #[cfg(windows)]
    {
        let mut ctrl_break =
            tokio::signal::windows::ctrl_break().expect("a Ctrl-Break handler can be installed");
        either(ctrl_break.recv(), actix_rt::signal::ctrl_c()).await;
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = actix_rt::signal::ctrl_c().await;
    }
}

/// Waits for whichever of two futures finishes first.
#[cfg(any(unix, windows))]
async fn either<A: std::future::Future, B: std::future::Future>(a: A, b: B) {
    futures_util::future::select(Box::pin(a), Box::pin(b)).await;
}
