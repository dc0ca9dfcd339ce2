//! `GET /v1/sims` and `GET /v1/profiles` against the real binary: filters, cursor pagination
//! that holds under concurrent writes, member counts, and `imei-lockctl sim list` /
//! `profile list` over them.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::radius::{access_request, authenticator, exchange, udp, SECRET};
use common::{Api, Daemon, TOKEN};
use serde_json::{json, Value};

/// Walks `/v1/sims?{query}` page by page with `limit`; returns the IMSIs in order and the
/// number of pages. `between` runs after each page.
fn walk(api: &Api, query: &str, limit: usize, mut between: impl FnMut()) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/sims?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, page) = api.get(&path);
        assert_eq!(st, 200, "{path}: {page}");
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        out.extend(items.iter().map(|s| s["imsi"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        between();
    }
    (out, pages)
}

fn imsi(n: u64) -> String {
    format!("00101{n:010}")
}

#[test]
fn ten_thousand_sims_are_listed_once_each_also_under_concurrent_writes() {
    let d = Daemon::start("");
    let api = d.api();
    // Even numbers exist from the start; odd ones are created during the walk; every 7th even
    // one is deleted during it.
    let original: Vec<String> = (0..10_000).map(|i| imsi(i * 2)).collect();
    api.import_locked(original.iter().cloned());

    let (listed, pages) = walk(&api, "", 997, || {});
    assert_eq!(pages, 11);
    assert_eq!(listed, original, "each SIM once, in key order");

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (base, done) = (api.base.clone(), done.clone());
        std::thread::spawn(move || {
            let api = Api { base };
            let (mut created, mut deleted) = (BTreeSet::new(), BTreeSet::new());
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) && i < 10_000 {
                let new = imsi(i * 2 * 7 + 1);
                let (st, _) = api.call("PUT", &format!("/v1/sims/{new}"), Some(json!({})));
                assert_eq!(st, 202);
                created.insert(new);
                let gone = imsi(i * 2 * 7);
                let (st, _) = api.call("DELETE", &format!("/v1/sims/{gone}"), None);
                assert_eq!(st, 202);
                deleted.insert(gone);
                i += 1;
            }
            (created, deleted)
        })
    };
    let (listed, _) = walk(&api, "", 997, || {
        std::thread::sleep(Duration::from_millis(100))
    });
    done.store(true, Ordering::Relaxed);
    let (created, deleted) = writer.join().unwrap();
    assert!(
        created.len() > 20,
        "the writes ran during the walk: {}",
        created.len()
    );

    let mut seen = HashMap::new();
    for s in &listed {
        *seen.entry(s.as_str()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "no SIM listed twice");
    for s in &original {
        if !deleted.contains(s) {
            assert_eq!(seen.get(s.as_str()), Some(&1), "{s} existed throughout");
        }
    }
    for s in &listed {
        assert!(
            original.contains(s) || created.contains(s),
            "{s} never existed"
        );
    }
    eprintln!(
        "walk under writes: {} listed, {} created and {} deleted during it",
        listed.len(),
        created.len(),
        deleted.len()
    );
}

/// Binds `imsi` to `imei` with a RADIUS session.
fn bind(d: &Daemon, imsi: &str, imei: &str) {
    let s = udp("127.0.0.1:0", Duration::from_secs(3));
    let pkt = access_request(1, authenticator(1), imsi, Some(imei), SECRET, true);
    let answer = exchange(&s, d.ports.radius_auth, &pkt).expect("an answer");
    assert_eq!(answer[0], 2, "Access-Accept");
}

/// IMSIs of a listing with `query`, walked in pages of 2.
fn listed(api: &Api, query: &str) -> Vec<String> {
    walk(api, query, 2, || {}).0
}

#[test]
fn filters_select_sims_and_profiles_list_their_members() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_profile("fleet", "lock");
    api.put_profile("meters", "disabled");
    let sims = [
        (
            "001010000000001",
            json!({"profile": "fleet", "msisdn": "+4917000001"}),
        ),
        (
            "001010000000002",
            json!({"profile": "fleet", "msisdn": "4917000002"}),
        ),
        (
            "001010000000003",
            json!({"profile": "fleet", "imei_management": "disabled"}),
        ),
        (
            "001020000000004",
            json!({"profile": "meters", "msisdn": "3360000004"}),
        ),
        ("001020000000005", json!({"imei_management": "pairing"})),
        ("001020000000006", json!({})),
    ];
    for (imsi, body) in &sims {
        api.put_sim(imsi, body.clone());
    }
    bind(&d, "001010000000001", "3520990017614823");

    let cases: [(&str, &[&str]); 12] = [
        (
            "",
            &[
                "001010000000001",
                "001010000000002",
                "001010000000003",
                "001020000000004",
                "001020000000005",
                "001020000000006",
            ],
        ),
        (
            "profile=fleet",
            &["001010000000001", "001010000000002", "001010000000003"],
        ),
        (
            "profile=fleet&effective=lock&bound=false",
            &["001010000000002"],
        ),
        ("profile=fleet&bound=true", &["001010000000001"]),
        ("effective=lock", &["001010000000001", "001010000000002"]),
        (
            "effective=disabled",
            &["001010000000003", "001020000000004", "001020000000006"],
        ),
        (
            "imei_management=none",
            &[
                "001010000000001",
                "001010000000002",
                "001020000000004",
                "001020000000006",
            ],
        ),
        ("imei_management=pairing", &["001020000000005"]),
        (
            "imsi_prefix=00102",
            &["001020000000004", "001020000000005", "001020000000006"],
        ),
        ("imsi_prefix=00102&profile=meters", &["001020000000004"]),
        (
            "msisdn_prefix=%2B49170",
            &["001010000000001", "001010000000002"],
        ),
        ("profile=nobody", &[]),
    ];
    for (query, want) in cases {
        assert_eq!(listed(&api, query), want, "?{query}");
    }
    // Items are the SIM objects GET /v1/sims/{imsi} gives.
    let (_, page) = api.get("/v1/sims?bound=true");
    assert_eq!(page["items"][0], api.sim("001010000000001"));
    assert_eq!(page["items"][0]["bound_imei"], "35209900176148");

    let (st, page) = api.get("/v1/profiles?limit=1");
    assert_eq!(st, 200);
    assert_eq!(
        page,
        json!({"items": [{"name": "fleet", "imei_management": "lock", "lock_fee": null, "sims": 3}],
               "next_cursor": "fleet"})
    );
    let (_, page) = api.get("/v1/profiles?limit=1&cursor=fleet");
    assert_eq!(
        page,
        json!({"items": [{"name": "meters", "imei_management": "disabled", "lock_fee": null, "sims": 1}],
               "next_cursor": null})
    );

    // imei-lockctl: the same filters, JSON and a table.
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(common::bin("imei-lockctl"))
            .args(["--api", &d.url(""), "--token", TOKEN])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&ctl(&[
        "--json",
        "sim",
        "list",
        "--profile",
        "fleet",
        "--effective",
        "lock",
        "--bound",
        "false",
    ]))
    .unwrap();
    let imsis: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["imsi"].as_str().unwrap())
        .collect();
    assert_eq!(imsis, ["001010000000002"]);
    let v: Value = serde_json::from_str(&ctl(&["--json", "sim", "list", "--limit", "4"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    let table = ctl(&["sim", "list", "--imsi-prefix", "00102"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("IMSI") && lines[0].contains("EFFECTIVE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("001020000000004") && lines[1].contains("meters"),
        "{table}"
    );
    let table = ctl(&["profile", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("fleet") && l.trim_end().ends_with('3')),
        "{table}"
    );
    let v: Value = serde_json::from_str(&ctl(&["--json", "profile", "list"])).unwrap();
    assert_eq!(v[1]["name"], "meters");
}
