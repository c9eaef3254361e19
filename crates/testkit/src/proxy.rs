//! A TCP proxy in front of a real service, to take it away from the engine and give it back
//! (an outage of PostgreSQL or Redis) without stopping the server every other test shares.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards connections on its own port to `upstream`, until [`TcpProxy::cut`].
#[derive(Debug)]
pub struct TcpProxy {
    pub address: SocketAddr,
    upstream: SocketAddr,
    /// Bumped by every cut: each forwarded connection ends when it changes.
    cuts: watch::Sender<u64>,
    /// The accept loop; it owns the listener, so aborting it closes the port.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("local address");
        let (cuts, _) = watch::channel(0);
        let proxy = Self {
            address,
            upstream,
            cuts,
            accept: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, cuts) = (self.upstream, self.cuts.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, upstream, cuts.subscribe()));
            }
        });
        if let Some(previous) = self.accept.lock().unwrap().replace(accept) {
            previous.abort();
        }
    }

    /// The service goes down: open connections are closed and new ones refused, as when the
    /// server process stops.
    pub fn cut(&self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// The service is back, on the same port.
    pub async fn restore(&self) {
        // The aborted accept loop drops its listener when the runtime next polls it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(err) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "cannot listen on {} again: {err}",
                        self.address
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {}
    }
}
