//! The RADIUS shell over real UDP sockets and the in-memory store.

use super::port::Seen;
use super::*;
use crate::radius::codec::Code;
use crate::radius::dedup::DedupKey;

#[test]
fn dedup_shards_cache_and_abandon() {
    let c = DedupShards::new(Duration::from_secs(5));
    let key = DedupKey::new("192.0.2.1:1000".parse().unwrap(), 7, [7; 16]);
    assert!(matches!(c.begin(key), Seen::New));
    assert!(matches!(c.begin(key), Seen::InProgress));
    c.abandon(&key);
    assert!(matches!(c.begin(key), Seen::New));
    c.insert(key, vec![1, 2, 3]);
    assert!(matches!(c.begin(key), Seen::Cached(b) if b == [1, 2, 3]));
}

fn config(auth: &str, acct: &str) -> Config {
    let mut cfg = Config::default();
    cfg.radius.auth_listen = auth.into();
    cfg.radius.acct_listen = acct.into();
    cfg
}

#[tokio::test]
async fn bind_error_names_the_key() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let Err(e) = RadiusService::bind(&config("127.0.0.1:0", &addr)).await else {
        panic!("bind to a taken port succeeded");
    };
    assert!(
        e.starts_with(&format!("cannot listen on radius.acct_listen {addr}: ")),
        "{e}"
    );
    let Err(e) = RadiusService::bind(&config("nonsense", "127.0.0.1:0")).await else {
        panic!("bad address accepted");
    };
    assert!(e.contains("radius.auth_listen"), "{e}");
}

/// A clock that takes `delay` per reading: makes every engine call slow.
struct SlowClock(Duration);

impl crate::engine::Clock for SlowClock {
    fn now_ms(&self) -> crate::store::Millis {
        std::thread::sleep(self.0);
        0
    }
}

struct Running {
    auth: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(delay: Duration) -> Running {
    start_with(delay, crate::store::memory::MemStore::new()).await
}

async fn start_with(delay: Duration, store: crate::store::memory::MemStore) -> Running {
    let mut cfg = config("127.0.0.1:0", "127.0.0.1:0");
    cfg.radius.clients = vec![crate::config::RadiusClientConfig {
        name: "local".into(),
        address: "127.0.0.1/32".into(),
        secret: Some("testing123".into()),
        secret_file: None,
        require_message_authenticator: true,
        secret_from_file: None,
    }];
    let service = RadiusService::bind(&cfg).await.unwrap();
    let (auth, _) = service.local_addrs().unwrap();
    let engine = Arc::new(Engine::new(
        Arc::new(store),
        crate::engine::EnginePolicy::default(),
        Arc::new(SlowClock(delay)),
    ));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(service.run(engine, rx));
    Running { auth, stop, task }
}

fn access_request(id: u8, seed: u8) -> Vec<u8> {
    use crate::radius::vsa::{encode_vsa, TGPP_IMSI, VENDOR_3GPP};
    let imsi = encode_vsa(VENDOR_3GPP, &[(TGPP_IMSI, b"001010000000001")]).unwrap();
    encode_with(id, seed, &imsi)
}

/// An Access-Request presenting an IMEI: on a locked SIM with nothing bound it binds, so it
/// goes to the blocking pool (see `Engine::decide_in_memory`).
fn binding_request(id: u8, seed: u8) -> Vec<u8> {
    use crate::radius::vsa::{encode_vsa, TGPP_IMEISV, TGPP_IMSI, VENDOR_3GPP};
    let vsa = encode_vsa(
        VENDOR_3GPP,
        &[
            (TGPP_IMSI, b"001010000000001"),
            (TGPP_IMEISV, b"3500000000000101"),
        ],
    )
    .unwrap();
    encode_with(id, seed, &vsa)
}

fn encode_with(id: u8, seed: u8, imsi: &[u8]) -> Vec<u8> {
    crate::radius::encode::encode_access_request(
        Code::AccessRequest,
        id,
        &[seed; 16],
        &[(crate::radius::attr::VENDOR_SPECIFIC, imsi)],
        b"testing123",
        true,
    )
    .unwrap()
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

async fn recv(s: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(within, s.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => buf.get(..n).map(<[u8]>::to_vec),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_in_flight_go_out_after_stop() {
    let r = start(Duration::from_millis(300)).await;
    let c = client().await;
    c.send_to(&access_request(1, 1), r.auth).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.stop.send(true).unwrap();
    // Unknown SIM: Access-Reject, sent although stop fired while it was evaluated.
    let answer = recv(&c, Duration::from_secs(3))
        .await
        .expect("answer after stop");
    assert_eq!(answer.first(), Some(&3));
    tokio::time::timeout(Duration::from_secs(3), r.task)
        .await
        .expect("run returns after the drain")
        .unwrap();
    // Nothing is received any more.
    c.send_to(&access_request(2, 2), r.auth).await.unwrap();
    assert!(recv(&c, Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_beyond_the_in_flight_bound() {
    use crate::store::{commit_blocking, Batch, Durability, ImeiManagement, SimRecord};
    // A locked SIM with nothing bound: every request may bind, so every one goes to the
    // blocking pool (decisions made from memory run inline and are not bounded here).
    let store = crate::store::memory::MemStore::new();
    let imsi = crate::context::Imsi::parse(b"001010000000001").unwrap();
    let mut sim = SimRecord::new(imsi);
    sim.value = Some(ImeiManagement::Lock);
    let mut batch = Batch::new();
    batch.put_sim(sim);
    commit_blocking(&store, batch, Durability::Synced).unwrap();
    let r = start_with(Duration::from_millis(1500), store).await;
    let c = client().await;
    let sent = MAX_IN_FLIGHT as usize + 40;
    for i in 0..sent {
        let pkt = binding_request((i % 256) as u8, (i / 256) as u8 + 1);
        c.send_to(&pkt, r.auth).await.unwrap();
    }
    let mut answers = 0;
    while recv(&c, Duration::from_millis(2500)).await.is_some() {
        answers += 1;
    }
    // Each engine call reads the clock at least once (1.5 s): only the permitted ones are
    // evaluated, the rest are dropped, not queued without bound.
    assert_eq!(answers, MAX_IN_FLIGHT as usize);
    r.stop.send(true).unwrap();
    r.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_server_and_retransmission() {
    let r = start(Duration::ZERO).await;
    let c = client().await;
    let status = crate::radius::encode::encode_access_request(
        Code::StatusServer,
        9,
        &[9; 16],
        &[],
        b"testing123",
        true,
    )
    .unwrap();
    c.send_to(&status, r.auth).await.unwrap();
    let a = recv(&c, Duration::from_secs(2))
        .await
        .expect("status answer");
    assert_eq!(a.first(), Some(&2));
    let pkt = access_request(3, 3);
    c.send_to(&pkt, r.auth).await.unwrap();
    let first = recv(&c, Duration::from_secs(2)).await.expect("answer");
    c.send_to(&pkt, r.auth).await.unwrap();
    let again = recv(&c, Duration::from_secs(2))
        .await
        .expect("cached answer");
    assert_eq!(first, again);
    r.stop.send(true).unwrap();
    r.task.await.unwrap();
}

#[tokio::test]
async fn binds_with_a_large_receive_buffer() {
    let s = RadiusService::bind(&config("127.0.0.1:0", "127.0.0.1:0"))
        .await
        .unwrap();
    let (auth, acct) = s.local_addrs().unwrap();
    assert_ne!(auth.port(), 0);
    assert_ne!(acct.port(), 0);
}

#[tokio::test]
async fn reloader_swaps_the_client_table_and_keeps_it_on_error() {
    let mut cfg = config("127.0.0.1:0", "127.0.0.1:0");
    let client = |name: &str, address: &str| crate::config::RadiusClientConfig {
        name: name.into(),
        address: address.into(),
        secret: Some("s".into()),
        secret_file: None,
        require_message_authenticator: true,
        secret_from_file: None,
    };
    cfg.radius.clients = vec![client("a", "127.0.0.1/32")];
    let s = RadiusService::bind(&cfg).await.unwrap();
    let r = s.reloader();
    cfg.radius.clients = vec![client("a", "127.0.0.1/32"), client("b", "127.0.0.3")];
    assert_eq!(r.reload(&cfg), Ok(2));
    let ip = "127.0.0.3".parse().unwrap();
    let name = |s: &RadiusService| s.clients.read().by_source(ip).map(|c| c.name.to_string());
    assert_eq!(name(&s).as_deref(), Some("b"));
    cfg.radius.clients = vec![client("c", "127.0.0.3/33")];
    let e = r.reload(&cfg).unwrap_err();
    assert!(e.contains("radius.clients[0].address"), "{e}");
    assert_eq!(name(&s).as_deref(), Some("b"));
}
