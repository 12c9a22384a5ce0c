//! Misbehaving upstreams (issue 15): error rcodes fail the query at that upstream and the next
//! one is asked; an upstream that drops queries with EDNS is asked without; an upstream that
//! folds the case of names is settled over TCP, or by a second UDP query that must agree.
//! Each test checks what the client gets (rcode, EDE, answer) and how often the upstream was
//! asked.

use crate::common::*;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use nxguard::config::Config;
use std::time::Duration;

/// Count of a fallback kind or an error rcode at the `index`th upstream.
fn counted(server: &TestServer, index: usize, label: &str) -> u64 {
    let live = server.running.resolver.live();
    let upstream = live.upstreams.upstreams().nth(index).expect("that upstream");
    let fallbacks = &upstream.stats.fallbacks;
    fallbacks.kinds().into_iter().chain(fallbacks.rcodes()).find(|(l, _)| *l == label).expect("a known label").1
}

/// The value of one series on the metrics page.
fn metric(server: &TestServer, series: &str) -> String {
    let page = nxguard::ops::metrics::render(&server.running.resolver);
    let line = page.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series} missing"));
    line[series.len()..].trim().to_string()
}

fn transport_errors(server: &TestServer, index: usize) -> u64 {
    server.running.resolver.live().upstreams.servers().nth(index).expect("that upstream").1.errors()
}

/// SERVFAIL, no records, and with EDNS the Extended DNS Error `ede`.
fn assert_servfail(reply: &Message, ede: u16) {
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail, "{reply:?}");
    assert!(reply.answers.is_empty());
    assert_eq!(extended_error(reply).map(|e| e.0), Some(ede), "{reply:?}");
}

fn two_servers(first: &FakeUpstream, second: &FakeUpstream) -> Config {
    Config::from_toml(&format!(
        "[upstream]\ntimeout_ms = 600\n[[upstream.servers]]\naddress = \"{}\"\n[[upstream.servers]]\naddress = \"{}\"\n",
        first.addr, second.addr
    ))
    .unwrap()
}

#[tokio::test]
async fn error_rcodes_give_servfail_with_ede_22_and_other_rcodes_pass_through() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    for (name, label) in [("refused", "REFUSED"), ("servfail", "SERVFAIL"), ("notimp", "NOTIMP")] {
        let before = upstream.calls();
        let reply = udp_ask(server.udp, &query(&format!("{name}.example.org."), RecordType::A, true)).await;
        assert_servfail(&reply, 22);
        assert_eq!(upstream.calls() - before, 1, "{name}: asked once, no retry at the same upstream");
        assert_eq!(counted(&server, 0, label), 1);
    }
    // FORMERR is asked once more without EDNS (RFC 6891 §7); when it persists, it is a failure.
    let before = upstream.calls();
    assert_servfail(&udp_ask(server.udp, &query("formerr.example.org.", RecordType::A, true)).await, 22);
    assert_eq!(upstream.calls() - before, 2, "with and without EDNS");
    assert_eq!(counted(&server, 0, "FORMERR"), 1);
    // NXDOMAIN and NOERROR are answers, passed on as before.
    let before = upstream.calls();
    let reply = udp_ask(server.udp, &query("nx.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(extended_error(&reply), None);
    let mut with_do = query("www.example.org.", RecordType::A, true);
    with_do.edns.as_mut().unwrap().set_dnssec_ok(true);
    let reply = udp_ask(server.udp, &with_do).await;
    assert_forwarded(&reply, RecordType::A);
    assert!(reply.edns.unwrap().flags().dnssec_ok, "one FORMERR does not take EDNS away from the upstream");
    assert_eq!(upstream.calls() - before, 2);
    // An upstream that answers is reachable: error answers do not count as transport failures.
    assert_eq!(transport_errors(&server, 0), 0);
}

#[tokio::test]
async fn a_name_one_upstream_refuses_does_not_take_it_out_for_other_names() {
    let first = FakeUpstream::start().await;
    let second = FakeUpstream::start().await;
    let server = start_server(&two_servers(&first, &second));
    for _ in 0..3 {
        // Both refuse this name (the fake answers by name): each is asked once, then SERVFAIL.
        let reply = udp_ask(server.udp, &query("refused.example.org.", RecordType::A, true)).await;
        assert_servfail(&reply, 22);
    }
    assert_eq!((first.calls(), second.calls()), (3, 3));
    // Three refusals in a row: the first upstream still gets the next name, and answers it.
    assert_forwarded(&udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await, RecordType::A);
    assert_eq!((first.calls(), second.calls()), (4, 3), "the first upstream was not marked down");
}

#[tokio::test]
async fn refused_by_one_upstream_is_answered_by_the_next() {
    let refusing = FakeUpstream::start_faulty(Faults { rcode: Some(ResponseCode::Refused), ..Faults::default() }).await;
    let second = FakeUpstream::start().await;
    let server = start_server(&two_servers(&refusing, &second));
    for i in 1..=2 {
        let reply = udp_ask(server.udp, &query(&format!("host{i}.example.org."), RecordType::A, true)).await;
        assert_forwarded(&reply, RecordType::A);
        assert_eq!(extended_error(&reply), None);
        assert_eq!((refusing.calls(), second.calls()), (i, i), "each query: one REFUSED, then the next upstream");
    }
    assert_eq!(counted(&server, 0, "REFUSED"), 2);
    assert_eq!(transport_errors(&server, 0), 0);
    let series = format!("nxguard_upstream_error_rcodes_total{{upstream=\"{}\",rcode=\"REFUSED\"}}", refusing.addr);
    assert_eq!(metric(&server, &series), "2");
}

#[tokio::test]
async fn an_error_answer_without_its_question_fails_over_at_once() {
    // Some servers answer REFUSED with the header alone (QDCOUNT 0). Such a reply used to be
    // dropped as unmatched: the query waited for the timeout and the upstream counted as down.
    let refusing = FakeUpstream::start_faulty(Faults {
        rcode: Some(ResponseCode::Refused),
        no_question: true,
        ..Faults::default()
    })
    .await;
    let second = FakeUpstream::start().await;
    let server = start_server(&two_servers(&refusing, &second));
    for i in 1..=2 {
        let reply = udp_ask(server.udp, &query(&format!("bare{i}.example.org."), RecordType::A, true)).await;
        assert_forwarded(&reply, RecordType::A);
        assert_eq!((refusing.calls(), second.calls()), (i, i), "one bare REFUSED, then the next upstream");
    }
    assert_eq!(counted(&server, 0, "REFUSED"), 2, "read as the REFUSED it is");
    assert_eq!(transport_errors(&server, 0), 0, "not a timeout");
    // Alone, the same upstream gives SERVFAIL with EDE 22 (an upstream answered with an error).
    let alone = start_server(&config_for(refusing.addr, ""));
    assert_servfail(&udp_ask(alone.udp, &query("bare3.example.org.", RecordType::A, true)).await, 22);
}

#[tokio::test]
async fn an_upstream_that_drops_queries_with_edns_is_asked_without() {
    let upstream = FakeUpstream::start_faulty(Faults { drop_edns: true, ..Faults::default() }).await;
    let server = start_server(&config_for(upstream.addr, ""));
    let mut asked = query("www.example.org.", RecordType::A, true);
    asked.edns.as_mut().unwrap().set_dnssec_ok(true);
    let reply = udp_ask(server.udp, &asked).await;
    assert_forwarded(&reply, RecordType::A);
    let edns = reply.edns.as_ref().expect("the client used EDNS, so it gets an OPT record");
    assert!(!edns.flags().dnssec_ok, "asked upstream without EDNS: there is no DO to echo");
    assert_eq!(upstream.calls(), 2, "with EDNS (dropped), then without");
    // Remembered: the next query goes without EDNS straight away.
    assert_forwarded(&udp_ask(server.udp, &query("mail.example.org.", RecordType::A, true)).await, RecordType::A);
    assert_eq!(upstream.calls(), 3);
    assert_eq!(counted(&server, 0, "edns_plain"), 2);
    let live = server.running.resolver.live();
    assert!(live.upstreams.upstreams().next().unwrap().memory.needs_plain(std::time::Instant::now()));
}

#[tokio::test]
async fn silence_from_an_upstream_known_to_take_edns_is_not_taken_for_edns_trouble() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    assert_forwarded(&udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await, RecordType::A);
    assert_eq!(upstream.calls(), 1);
    let reply = udp_ask(server.udp, &query("silent.example.org.", RecordType::A, true)).await;
    assert_servfail(&reply, 23);
    assert_eq!(upstream.calls(), 2, "no retry without EDNS");
    assert_eq!(counted(&server, 0, "edns_plain"), 0);
}

/// A long name: the chance that 0x20 leaves all 28 letters lowercase (so a folded answer would
/// match by luck) is 2^-28.
fn long_name(i: usize) -> String {
    format!("abcdefghijklmnopqrstuvwxyz{i}.example.org.")
}

#[tokio::test]
async fn a_case_folding_upstream_with_tcp_is_settled_over_tcp_then_by_a_second_query() {
    let upstream = FakeUpstream::start_faulty(Faults { fold_case: true, ..Faults::default() }).await;
    let server = start_server(&config_for(upstream.addr, ""));
    let reply = udp_ask(server.udp, &query(&long_name(1), RecordType::A, true)).await;
    assert_forwarded(&reply, RecordType::A);
    assert_eq!((upstream.udp_calls(), upstream.tcp_calls()), (1, 1), "UDP in the wrong case, then TCP");
    assert_eq!(counted(&server, 0, "case_tcp"), 1);
    // The TCP answer came back lowercased too: the upstream folds case, and is noted so. From
    // now on a second UDP query with a fresh ID and port must agree, instead of TCP.
    let reply = udp_ask(server.udp, &query(&long_name(2), RecordType::A, true)).await;
    assert_forwarded(&reply, RecordType::A);
    assert_eq!((upstream.udp_calls(), upstream.tcp_calls()), (3, 1));
    assert_eq!(counted(&server, 0, "case_double_query"), 1);
}

#[tokio::test]
async fn a_case_folding_upstream_without_tcp_is_answered_when_two_queries_agree() {
    let upstream = FakeUpstream::start_faulty(Faults { fold_case: true, no_tcp: true, ..Faults::default() }).await;
    let server = start_server(&config_for(upstream.addr, ""));
    for i in 1..=2 {
        let asked = query(&long_name(i), RecordType::A, true);
        let reply = udp_ask(server.udp, &asked).await;
        assert_forwarded(&reply, RecordType::A);
        assert_eq!(reply.queries[0].name().to_ascii(), asked.queries[0].name().to_ascii());
        assert_eq!(upstream.udp_calls(), 2 * i, "two UDP queries per client query");
    }
    assert_eq!(counted(&server, 0, "case_double_query"), 2);
    assert_eq!(counted(&server, 0, "case_tcp"), 0);
    let series =
        format!("nxguard_upstream_fallbacks_total{{upstream=\"{}\",kind=\"case_double_query\"}}", upstream.addr);
    assert_eq!(metric(&server, &series), "2");
    assert_eq!(server.running.resolver.live().upstreams.upstreams().next().unwrap().udp().case_mismatches(), 4);
}

#[tokio::test]
async fn answers_in_another_case_that_disagree_are_rejected() {
    // Each answer differs, as forgeries would: the second query never confirms the first.
    let upstream =
        FakeUpstream::start_faulty(Faults { fold_case: true, no_tcp: true, vary_answers: true, ..Faults::default() })
            .await;
    let server = start_server(&config_for(upstream.addr, ""));
    let reply = udp_ask(server.udp, &query(&long_name(1), RecordType::A, true)).await;
    assert_servfail(&reply, 23);
    assert_eq!(upstream.udp_calls(), 2);
    assert_eq!(counted(&server, 0, "case_rejected"), 1);
    assert_eq!(counted(&server, 0, "case_double_query"), 0);
}

/// NLnet Labs' `fwd_edns_probe`: an upstream that answers FORMERR to queries with EDNS and
/// folds the case of names. The case-folding and no-EDNS fallbacks must compose: the FORMERR
/// (in another case) is settled like any answer, then the query goes without EDNS.
#[tokio::test]
async fn an_upstream_without_edns_that_folds_case_is_answered() {
    for (no_tcp, tcp_silent) in [(false, false), (true, false), (false, true)] {
        let faults = Faults { fold_case: true, formerr_edns: true, no_tcp, tcp_silent, ..Faults::default() };
        let upstream = FakeUpstream::start_faulty(faults).await;
        let server = start_server(&config_for(upstream.addr, ""));
        for i in 1..=3 {
            let asked = query(&long_name(i), RecordType::A, true);
            let reply = udp_ask(server.udp, &asked).await;
            assert_forwarded(&reply, RecordType::A);
            assert_eq!(reply.queries[0].name().to_ascii(), asked.queries[0].name().to_ascii(), "{faults:?}");
        }
        assert!(counted(&server, 0, "edns_plain") >= 3, "{faults:?}: answered without EDNS");
    }
}

/// `fwd_edns_probe` itself: a name the upstream answers FORMERR with and without EDNS gives
/// SERVFAIL, and does not stop the next name from being asked with EDNS; the upstream folds
/// case and its TCP side answers nothing (ldns-testns entries that match UDP only).
#[tokio::test]
async fn after_a_lasting_formerr_a_case_folding_upstream_still_gets_edns() {
    let upstream = FakeUpstream::start_faulty(Faults { fold_case: true, tcp_silent: true, ..Faults::default() }).await;
    let server = start_server(&config_for(upstream.addr, ""));
    let nasty = query("formerr-abcdefghijklmnopqrstuvwxyz.example.org.", RecordType::A, true);
    assert_servfail(&udp_ask(server.udp, &nasty).await, 22);
    let mut asked = query(&long_name(1), RecordType::A, true);
    asked.edns.as_mut().unwrap().set_dnssec_ok(true);
    let reply = udp_ask(server.udp, &asked).await;
    assert_forwarded(&reply, RecordType::A);
    assert!(reply.edns.expect("an OPT record").flags().dnssec_ok, "asked with EDNS, DO echoed");
}

/// One upstream, the default time budget (1.5 s), unless `timeout_ms` is given.
fn slow_server_config(upstream: std::net::SocketAddr, timeout_ms: Option<u64>) -> Config {
    let timeout = timeout_ms.map(|ms| format!("timeout_ms = {ms}\n")).unwrap_or_default();
    Config::from_toml(&format!(
        "[upstream]\n{timeout}[[upstream.servers]]\naddress = \"{upstream}\"\nprotocol = \"udp\"\n"
    ))
    .unwrap()
}

/// `count` queries at once; every one must be answered (not SERVFAIL).
async fn all_answered(server: std::net::SocketAddr, count: usize) {
    let asked: Vec<Message> =
        (1..=count).map(|i| query(&format!("www{i}.example.org."), RecordType::A, true)).collect();
    let replies = futures_util::future::join_all(asked.iter().map(|q| udp_ask(server, q))).await;
    for (q, reply) in asked.iter().zip(&replies) {
        assert_forwarded(reply, RecordType::A);
        assert_eq!(reply.queries[0].name(), q.queries[0].name());
    }
}

/// NLnet Labs' `fwd_waitudp`: three queries at once to an upstream that answers one at a time,
/// a second each. The second and third answers come after the 1.5 s budget; the server is
/// plainly alive (it answered the first meanwhile), so they are waited for (`upstream::pool`,
/// the RTT-based timeout).
#[tokio::test]
async fn a_slow_upstream_answering_one_query_at_a_time_is_waited_for() {
    let faults = Faults { one_at_a_time: Some(Duration::from_secs(1)), ..Faults::default() };
    let upstream = FakeUpstream::start_faulty(faults).await;
    let server = start_server(&slow_server_config(upstream.addr, None));
    all_answered(server.udp, 3).await;
}

/// `fwd_oneport`: six at once, scaled down (a 300 ms budget, 200 ms per answer).
#[tokio::test]
async fn six_queries_queued_at_a_slow_upstream_are_all_answered() {
    let faults = Faults { one_at_a_time: Some(Duration::from_millis(200)), ..Faults::default() };
    let upstream = FakeUpstream::start_faulty(faults).await;
    let server = start_server(&slow_server_config(upstream.addr, Some(300)));
    all_answered(server.udp, 6).await;
}

/// The other side: an upstream that does not answer is not waited for past the budget, so a
/// client that gives up after 1.8 s (RFC 8767's client response timer) still gets SERVFAIL:
/// a dead one, and the slow one once it has gone silent.
#[tokio::test]
async fn a_dead_or_silent_upstream_still_gives_servfail_within_the_client_timer() {
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let slow =
        FakeUpstream::start_faulty(Faults { one_at_a_time: Some(Duration::from_secs(1)), ..Faults::default() }).await;
    let client_timer = Duration::from_millis(1800);
    for (upstream, warm) in [(dead.local_addr().unwrap(), false), (slow.addr, true)] {
        let server = start_server(&slow_server_config(upstream, None));
        if warm {
            all_answered(server.udp, 1).await;
        }
        let asked = query("silent.example.org.", RecordType::A, true).to_vec().unwrap();
        let raw = udp_exchange_raw(server.udp, std::net::IpAddr::from([127, 0, 0, 1]), &asked, client_timer).await;
        let reply = Message::from_vec(&raw.expect("an answer within the client's 1.8 s")).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail, "{upstream}");
    }
}
