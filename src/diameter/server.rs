//! The Diameter I/O shell: TCP and SCTP listeners, one task per connection driving a peer.
//! (Stub: filled in by the Diameter front-end work.)

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::engine::Engine;

/// Bound Diameter listeners, ready to serve.
pub struct DiameterService {
    _private: (),
}

impl DiameterService {
    /// Binds the listeners of `[diameter] listen`.
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
