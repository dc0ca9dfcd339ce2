//! The RADIUS UDP I/O shell: sockets and receive tasks feeding the codec and the engine.
//! (Stub: filled in by the RADIUS front-end work.)

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::engine::Engine;

/// Bound RADIUS sockets, ready to serve.
pub struct RadiusService {
    _private: (),
}

impl RadiusService {
    /// Binds the auth and accounting sockets named by `[radius]`.
    ///
    /// # Errors
    /// A message naming the key whose address cannot be bound.
    pub async fn bind(_cfg: &Config) -> Result<Self, String> {
        Ok(Self { _private: () })
    }

    /// Serves until `stop` becomes true.
    pub async fn run(self, _engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
        let _ = stop.wait_for(|&s| s).await;
    }
}
