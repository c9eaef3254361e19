//! A TCP proxy in front of a real service, to take it away from the engine and give it back
//! (an outage of PostgreSQL or Redis) without stopping the server every other test shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards connections on its own port to `upstream`, until [`TcpProxy::cut`].
#[derive(Debug)]
pub struct TcpProxy {
    pub address: SocketAddr,
    open: Arc<AtomicBool>,
    /// Bumped by every cut: each forwarded connection ends when it changes.
    cuts: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("local address");
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let accept = {
            let (open, cuts) = (Arc::clone(&open), cuts.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        // Closed at once, as by a server that is down.
                        drop(client);
                        continue;
                    }
                    tokio::spawn(forward(client, upstream, cuts.subscribe()));
                }
            })
        };
        Self {
            address,
            open,
            cuts,
            accept,
        }
    }

    /// The service goes away: open connections are closed and new ones are closed at once.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// The service is back.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
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
