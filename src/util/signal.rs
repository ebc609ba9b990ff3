//! Waiting for the signals that ask a process to stop: SIGTERM or Ctrl-C
//! (SIGINT) on Unix; Ctrl-C or Ctrl-Break on Windows (Ctrl-Break is what
//! `up` sends its workers, see [`crate::util::platform::ask_to_stop`]).
//!
//! The handlers are installed when [`StopSignals::install`] is called, not
//! when the wait is first polled: a process that says it is ready
//! ("listening on …") installs them before saying so, so a stop asked for
//! right after is caught and drained, never the default action that ends
//! the process on the spot.

/// The stop signals, caught from the moment they were installed.
pub struct StopSignals {
    #[cfg(unix)]
    term: actix_rt::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: actix_rt::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
}

impl StopSignals {
    /// Installs the handlers now; must run inside the actix system.
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use actix_rt::signal::unix::{signal, SignalKind};
            Self {
                term: signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed"),
                interrupt: signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed"),
            }
        }
        #[cfg(windows)]
        {
            Self {
                ctrl_break: tokio::signal::windows::ctrl_break()
                    .expect("a Ctrl-Break handler can be installed"),
                ctrl_c: tokio::signal::windows::ctrl_c().expect("a Ctrl-C handler can be installed"),
            }
        }
        #[cfg(not(any(unix, windows)))]
        Self {}
    }

    /// Resolves on the first request to stop since [`Self::install`].
    pub async fn recv(mut self) {
        #[cfg(unix)]
        either(self.term.recv(), self.interrupt.recv()).await;
        #[cfg(windows)]
        either(self.ctrl_break.recv(), self.ctrl_c.recv()).await;
        #[cfg(not(any(unix, windows)))]
        {
            let _ = &mut self;
            let _ = actix_rt::signal::ctrl_c().await;
        }
    }
}

/// Resolves on the first request to stop from now on.
pub async fn wait_for_signal() {
    StopSignals::install().recv().await
}

/// Waits for whichever of two futures finishes first.
#[cfg(any(unix, windows))]
async fn either<A: std::future::Future, B: std::future::Future>(a: A, b: B) {
    futures_util::future::select(Box::pin(a), Box::pin(b)).await;
}
