//! A TCP proxy that injects faults between any client and server.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::{lock, loopback};
use crate::tasks::{self, Tasks};

/// Size of the forwarding buffer, one per direction and connection.
const BUF_SIZE: usize = 16 * 1024;

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes the client sends to the server.
    ClientToServer,
    /// Bytes the server sends to the client.
    ServerToClient,
}

/// A fault that [`FaultProxy::schedule`] turns on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Stop forwarding both ways, keeping the connections open.
    Blackhole,
    /// Stop forwarding one way.
    Stall(Direction),
    /// Refuse new connections.
    Refuse,
    /// Delay every chunk by this much.
    Latency(Duration),
    /// Cut every live connection (turning it "off" does nothing).
    Cut,
}

impl Fault {
    fn apply(self, faults: &watch::Sender<Faults>, on: bool) {
        faults.send_modify(|f| match self {
            Fault::Blackhole => f.blackhole = on,
            Fault::Stall(Direction::ClientToServer) => f.stall_client_to_server = on,
            Fault::Stall(Direction::ServerToClient) => f.stall_server_to_client = on,
            Fault::Refuse => f.refuse = on,
            Fault::Latency(d) => f.latency = if on { d } else { Duration::ZERO },
            Fault::Cut if on => f.cut_epoch += 1,
            Fault::Cut => {}
        });
    }
}

/// The fault settings, published on a `watch` so running forwarders react at once.
#[derive(Debug, Clone, Default)]
struct Faults {
    refuse: bool,
    blackhole: bool,
    latency: Duration,
    stall_client_to_server: bool,
    stall_server_to_client: bool,
    /// Bumped by `cut_all`: a connection started under an older epoch is cut.
    cut_epoch: u64,
}

impl Faults {
    /// Whether bytes may move in `dir` now.
    fn flows(&self, dir: Direction) -> bool {
        let stalled = match dir {
            Direction::ClientToServer => self.stall_client_to_server,
            Direction::ServerToClient => self.stall_server_to_client,
        };
        !self.blackhole && !stalled
    }
}

/// Lifetimes for random cuts, drawn from a seeded generator.
#[derive(Debug)]
struct RandomCuts {
    min: Duration,
    max: Duration,
    rng: fastrand::Rng,
}

impl RandomCuts {
    fn draw(&mut self) -> Duration {
        let Some(span) = self.max.checked_sub(self.min) else {
            return self.min;
        };
        let span = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        self.min + Duration::from_nanos(self.rng.u64(0..=span))
    }
}

/// State shared by the handle, the accept loop and the connection tasks.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    faults_tx: watch::Sender<Faults>,
    connections: AtomicUsize,
    cuts: AtomicUsize,
    upstream_failures: AtomicUsize,
    random_cuts: Mutex<Option<RandomCuts>>,
    tasks: Mutex<Tasks>,
}

/// A TCP proxy on `127.0.0.1` that forwards to one upstream address and injects faults on
/// command.
///
/// Dropping it stops it too (its tasks are aborted).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listen on `127.0.0.1:0` and forward every connection to `upstream`.
    ///
    /// # Panics
    /// If the loopback address cannot be bound.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start_on(loopback(), upstream)
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Listen on `listen` (for the `resocket chaos` command) and forward to `upstream`.
    ///
    /// # Errors
    /// When `listen` cannot be bound.
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            upstream,
            faults_tx: watch::Sender::new(Faults::default()),
            connections: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            upstream_failures: AtomicUsize::new(0),
            random_cuts: Mutex::new(None),
            tasks: Mutex::new(Tasks::default()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(FaultProxy {
            addr,
            shared,
            accept_task: Some(accept_task),
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Number of TCP connections accepted so far, refused ones included.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Number of connections cut by the proxy so far ([`cut_all`](FaultProxy::cut_all) and random
    /// cuts; refusals are not cuts).
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Number of client connections closed because the upstream could not be reached.
    ///
    /// The proxy does not need its upstream to start: while the upstream is down, each client
    /// connection is accepted and closed at once, and counted here.
    pub fn upstream_failures(&self) -> usize {
        self.shared.upstream_failures.load(Ordering::SeqCst)
    }

    /// Close every live proxied connection abruptly, on both sides (no more bytes are forwarded).
    ///
    /// The cut happens asynchronously, right after this returns; connections accepted later are
    /// not affected.
    pub fn cut_all(&self) {
        self.shared.faults_tx.send_modify(|f| f.cut_epoch += 1);
    }

    /// While on, accept new connections and close them at once, without contacting the upstream.
    pub fn set_refuse(&self, on: bool) {
        self.shared.faults_tx.send_modify(|f| f.refuse = on);
    }

    /// While on, stop forwarding in both directions on live and new connections, keeping both TCP
    /// sides open. Bytes held back are forwarded once it is turned off.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.faults_tx.send_modify(|f| f.blackhole = on);
    }

    /// Delay each forwarded chunk by `d` (zero turns it off).
    pub fn set_latency(&self, d: Duration) {
        self.shared.faults_tx.send_modify(|f| f.latency = d);
    }

    /// Stop (or resume) forwarding in one direction, on live and new connections.
    pub fn set_stall(&self, dir: Direction, on: bool) {
        self.shared.faults_tx.send_modify(|f| match dir {
            Direction::ClientToServer => f.stall_client_to_server = on,
            Direction::ServerToClient => f.stall_server_to_client = on,
        });
    }

    /// Cut every connection accepted from now on after a random lifetime in `[min, max]`.
    ///
    /// Lifetimes come from `fastrand::Rng::with_seed(seed)`, drawn in accept order, so a run is
    /// reproducible. Live connections keep the lifetime they had.
    pub fn set_random_cuts(&self, min: Duration, max: Duration, seed: u64) {
        *lock(&self.shared.random_cuts) = Some(RandomCuts {
            min,
            max,
            rng: fastrand::Rng::with_seed(seed),
        });
    }

    /// Stop cutting connections accepted from now on at random.
    pub fn clear_random_cuts(&self) {
        *lock(&self.shared.random_cuts) = None;
    }

    /// Turns `fault` on for `lasting`, again and again, `every` apart. With a seed the gaps are
    /// drawn from `[every/2, every·3/2]` by a seeded generator (reproducible chaos); without,
    /// they are exactly `every`. The schedule ends with the proxy.
    pub fn schedule(&self, fault: Fault, every: Duration, lasting: Duration, seed: Option<u64>) {
        let shared = Arc::clone(&self.shared);
        let task = async move {
            let mut rng = seed.map(fastrand::Rng::with_seed);
            loop {
                let gap = match rng.as_mut() {
                    Some(rng) => {
                        let low = every / 2;
                        let span = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
                        low + Duration::from_nanos(rng.u64(0..=span))
                    }
                    None => every,
                };
                tokio::time::sleep(gap).await;
                fault.apply(&shared.faults_tx, true);
                tokio::time::sleep(lasting).await;
                fault.apply(&shared.faults_tx, false);
            }
        };
        lock(&self.shared.tasks).spawn(task);
    }

    /// Stop listening and close every proxied connection; returns once all sockets are closed.
    pub async fn stop(mut self) {
        tasks::stop(&mut self.accept_task, &self.shared.tasks).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        tasks::abort(&mut self.accept_task, &self.shared.tasks);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _peer)) => client,
            Err(error) => {
                // Typically EMFILE: pause instead of spinning.
                tracing::debug!(%error, "fault proxy accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let faults_rx = shared.faults_tx.subscribe();
        let (refuse, epoch) = {
            let faults = faults_rx.borrow();
            (faults.refuse, faults.cut_epoch)
        };
        if refuse {
            drop(client);
            continue;
        }
        let lifetime = lock(&shared.random_cuts).as_mut().map(RandomCuts::draw);
        let task = proxied(client, faults_rx, epoch, lifetime, Arc::clone(&shared));
        if !lock(&shared.tasks).spawn(task) {
            return;
        }
    }
}

/// One proxied connection, until both directions end, one fails, or the proxy cuts it.
async fn proxied(
    client: TcpStream,
    mut faults_rx: watch::Receiver<Faults>,
    epoch: u64,
    lifetime: Option<Duration>,
    shared: Arc<Shared>,
) {
    let server = match TcpStream::connect(shared.upstream).await {
        Ok(server) => server,
        Err(error) => {
            shared.upstream_failures.fetch_add(1, Ordering::SeqCst);
            tracing::debug!(
                upstream = %shared.upstream,
                peer = client.peer_addr().ok().map(tracing::field::display),
                %error,
                "upstream unreachable: closing the client connection"
            );
            return;
        }
    };
    // Nagle would only add latency to small test frames.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    let to_server = pump(
        client_rx,
        server_tx,
        Direction::ClientToServer,
        faults_rx.clone(),
    );
    let to_client = pump(
        server_rx,
        client_tx,
        Direction::ServerToClient,
        faults_rx.clone(),
    );
    let forward = async { tokio::try_join!(to_server, to_client) };
    let cut = async {
        let ordered = faults_rx.wait_for(|f| f.cut_epoch != epoch);
        match lifetime {
            Some(lifetime) => tokio::select! {
                _ = ordered => {}
                () = tokio::time::sleep(lifetime) => {}
            },
            // The sender lives in `shared`, which this task holds: `wait_for` cannot fail.
            None => drop(ordered.await),
        }
    };
    tokio::select! {
        () = cut => {
            // Dropping `forward` drops all four halves: both TCP connections close at once.
            shared.cuts.fetch_add(1, Ordering::SeqCst);
        }
        result = forward => {
            if let Err(error) = result {
                tracing::debug!(%error, "fault proxy connection ended");
            }
        }
    }
}

/// Copy one direction, a buffer at a time, obeying the fault settings between chunks.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    dir: Direction,
    mut faults_rx: watch::Receiver<Faults>,
) -> io::Result<()> {
    let mut buf = vec![0; BUF_SIZE];
    loop {
        flowing(&mut faults_rx, dir).await;
        let n = tokio::select! {
            read = from.read(&mut buf) => read?,
            // Stop reading at once, so a stall also holds back TCP flow control.
            () = stopped(&mut faults_rx, dir) => continue,
        };
        let latency = faults_rx.borrow().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        // A chunk read just before a stall is held until the direction flows again.
        flowing(&mut faults_rx, dir).await;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Wait until `dir` may forward.
async fn flowing(faults_rx: &mut watch::Receiver<Faults>, dir: Direction) {
    // The sender outlives every forwarder (the connection task holds `shared`): no error here.
    let _ = faults_rx.wait_for(|f| f.flows(dir)).await;
}

/// Wait until `dir` must stop forwarding.
async fn stopped(faults_rx: &mut watch::Receiver<Faults>, dir: Direction) {
    if faults_rx.wait_for(|f| !f.flows(dir)).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(min_ms: u64, max_ms: u64, seed: u64) -> RandomCuts {
        RandomCuts {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    #[test]
    fn random_lifetimes_are_reproducible_and_within_bounds() {
        let (mut a, mut b) = (cuts(10, 50, 42), cuts(10, 50, 42));
        for _ in 0..1000 {
            let lifetime = a.draw();
            assert_eq!(lifetime, b.draw());
            assert!((Duration::from_millis(10)..=Duration::from_millis(50)).contains(&lifetime));
        }
    }

    #[test]
    fn inverted_or_empty_range_gives_min() {
        assert_eq!(cuts(30, 10, 1).draw(), Duration::from_millis(30));
        assert_eq!(cuts(30, 30, 1).draw(), Duration::from_millis(30));
    }

    #[test]
    fn stalls_and_blackhole_stop_the_right_directions() {
        let mut faults = Faults {
            stall_client_to_server: true,
            ..Faults::default()
        };
        assert!(!faults.flows(Direction::ClientToServer));
        assert!(faults.flows(Direction::ServerToClient));
        faults.blackhole = true;
        assert!(!faults.flows(Direction::ServerToClient));
    }
}
