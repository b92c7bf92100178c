//! In-process tests of every role's HTTP API and `/events` WebSocket over real loopback sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use simulator::Role;

const EVENT_WAIT: Duration = Duration::from_secs(10);

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn decimals(x: f64) -> usize {
    let s = x.to_string();
    s.split_once('.').map_or(0, |(_, frac)| frac.len())
}

#[actix_rt::test]
async fn every_role_has_health_settings_events_and_json_errors() {
    for role in Role::ALL {
        let srv = start(role, |_| {}).await;
        let (status, health) = get(&srv, "/health").await;
        assert_eq!(status, 200);
        assert_eq!(health["status"], "ok");
        assert_eq!(health["service"], role.as_str());
        assert_eq!(health["instance"], srv.instance());
        let id = uuid::Uuid::parse_str(srv.instance()).unwrap();
        assert_eq!(id.get_version_num(), 4);

        assert_eq!(post(&srv, "/settings", &json!({"changed": {}, "all": {}})).await, (200, json!({"applied": true})));
        assert_error(&post_raw(&srv, "/settings", "{not json").await, 400, "bad settings JSON");
        assert_error(&post_raw(&srv, "/settings", "[1]").await, 400, "settings not an object");
        assert_error(&get(&srv, "/nowhere").await, 404, "unknown route");
        assert_error(&post(&srv, "/health", &json!({})).await, 405, "wrong method");
        let _events = events(&srv).await;
        srv.stop().await;
    }
}

#[actix_rt::test]
async fn stopping_closes_the_port_and_event_sockets() {
    let srv = start(Role::Strategy, |_| {}).await;
    let url = srv.url();
    let mut ws = events(&srv).await;
    srv.stop().await;
    let end = actix_rt::time::timeout(EVENT_WAIT, futures_util::StreamExt::next(&mut ws)).await.unwrap();
    let close = awc::ws::CloseReason::from(awc::ws::CloseCode::Away);
    assert!(matches!(end, Some(Ok(awc::ws::Frame::Close(Some(ref r)))) if *r == close), "a close frame: {end:?}");
    assert!(client().get(format!("{url}/health")).send().await.is_err(), "port still answers after stop");
}

#[actix_rt::test]
async fn data_symbols_and_latest_ticks() {
    let srv = start(Role::Data, |_| {}).await;
    let (status, symbols) = get(&srv, "/symbols").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = symbols.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]);
    for s in symbols.as_array().unwrap() {
        for key in ["description", "currency_base", "currency_profit"] {
            assert!(s[key].as_str().is_some_and(|v| !v.is_empty()), "{s}");
        }
        assert!(num(s, "point") > 0.0 && num(s, "spread") > 0.0, "{s}");
    }
    let digits = |name: &str| symbols.as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["digits"].clone();
    assert_eq!((digits("EURUSD"), digits("USDJPY"), digits("XAUUSD")), (json!(5), json!(3), json!(2)));

    for (symbol, max_decimals, lo, hi) in
        [("EURUSD", 5, 0.7, 1.5), ("USDJPY", 3, 100.0, 210.0), ("XAUUSD", 2, 1500.0, 3500.0), ("GBPUSD", 5, 0.9, 1.7)]
    {
        let (status, tick) = get(&srv, &format!("/ticks/latest?symbol={symbol}")).await;
        assert_eq!(status, 200, "{tick}");
        assert_eq!(tick["symbol"], symbol);
        let (bid, ask) = (num(&tick, "bid"), num(&tick, "ask"));
        assert!(bid > lo && bid < hi && ask > bid, "{tick}");
        assert!(decimals(bid) <= max_decimals && decimals(ask) <= max_decimals, "{tick}");
        assert!(tick["time_msc"].as_i64().unwrap() > 1_600_000_000_000, "{tick}");
        assert!(tick.get("last").is_some() && tick.get("volume").is_some(), "{tick}");
    }
    // ticks move on
    let first = get(&srv, "/ticks/latest?symbol=EURUSD").await.1["time_msc"].as_i64().unwrap();
    eventually(EVENT_WAIT, "a newer tick", || async {
        let t = get(&srv, "/ticks/latest?symbol=EURUSD").await.1["time_msc"].as_i64().unwrap();
        (t > first).then_some(())
    })
    .await;

    assert_error(&get(&srv, "/ticks/latest").await, 400, "missing symbol");
    assert_error(&get(&srv, "/ticks/latest?symbol=").await, 400, "empty symbol");
    assert_error(&get(&srv, "/ticks/latest?symbol=EUR%20USD").await, 400, "invalid symbol");
    assert_error(&get(&srv, "/ticks/latest?symbol=GBPJPY").await, 404, "symbol not served");
    assert_error(&post(&srv, "/ticks/latest?symbol=EURUSD", &json!({})).await, 405, "POST");
    srv.stop().await;
}

fn check_bars(bars: &Value, count: usize, tf_secs: Option<i64>) -> Vec<i64> {
    let bars = bars.as_array().unwrap();
    assert_eq!(bars.len(), count);
    let mut times = Vec::new();
    for b in bars {
        let (o, h, l, c) = (num(b, "open"), num(b, "high"), num(b, "low"), num(b, "close"));
        assert!(h >= o.max(c) && l <= o.min(c) && l > 0.0, "{b}");
        for key in ["tick_volume", "spread", "real_volume"] {
            assert!(b[key].as_u64().is_some(), "{b}");
        }
        let t = b["time"].as_i64().unwrap();
        if let Some(secs) = tf_secs {
            assert_eq!(t % secs, 0, "aligned: {b}");
        }
        times.push(t);
    }
    assert!(times.windows(2).all(|w| w[0] < w[1]), "oldest first");
    times
}

#[actix_rt::test]
async fn data_ohlc_history() {
    let srv = start(Role::Data, |_| {}).await;
    let (status, bars) = get(&srv, "/ohlc?symbol=EURUSD&timeframe=H1&count=50").await;
    assert_eq!(status, 200, "{bars}");
    let times = check_bars(&bars, 50, Some(3600));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let last = *times.last().unwrap();
    assert!(last <= now && now - last < 3600 + 5, "ends with the current bar");
    // deterministic: the same closed bars again
    let (_, again) = get(&srv, "/ohlc?symbol=EURUSD&timeframe=H1&count=50").await;
    if again.as_array().unwrap().last().unwrap()["time"] == last {
        assert_eq!(bars.as_array().unwrap()[..49], again.as_array().unwrap()[..49]);
    }

    let (_, weeks) = get(&srv, "/ohlc?symbol=XAUUSD&timeframe=W1&count=10").await;
    for t in check_bars(&weeks, 10, None) {
        let day = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
        assert_eq!((day.weekday(), day.hour(), day.minute()), (time::Weekday::Sunday, 0, 0));
    }
    let (_, months) = get(&srv, "/ohlc?symbol=USDJPY&timeframe=MN1&count=13").await;
    for t in check_bars(&months, 13, None) {
        let day = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
        assert_eq!((day.day(), day.hour()), (1, 0));
    }
    let (_, one) = get(&srv, "/ohlc?symbol=GBPUSD&timeframe=M1&count=1").await;
    check_bars(&one, 1, Some(60));
    let (_, default_count) = get(&srv, "/ohlc?symbol=GBPUSD&timeframe=M5").await;
    check_bars(&default_count, 100, Some(300));
    let (status, big) = get(&srv, "/ohlc?symbol=EURUSD&timeframe=M1&count=100000").await;
    assert_eq!(status, 200);
    check_bars(&big, 100_000, Some(60));

    for (query, status) in [
        ("symbol=EURUSD&timeframe=H5&count=5", 400),
        ("symbol=EURUSD&timeframe=h1&count=5", 400),
        ("symbol=EURUSD&count=5", 400),
        ("timeframe=H1&count=5", 400),
        ("symbol=EURUSD&timeframe=H1&count=0", 400),
        ("symbol=EURUSD&timeframe=H1&count=100001", 400),
        ("symbol=EURUSD&timeframe=H1&count=ten", 400),
        ("symbol=EURUSD&timeframe=H1&count=-1", 400),
        ("symbol=../x&timeframe=H1&count=5", 400),
        ("symbol=BTCUSD&timeframe=H1&count=5", 404),
    ] {
        assert_error(&get(&srv, &format!("/ohlc?{query}")).await, status, query);
    }
    srv.stop().await;
}

#[actix_rt::test]
async fn data_settings_switch_the_symbol_set_live() {
    let srv = start(Role::Data, |a| a.tick_rate = 50).await;
    let mut ws = events(&srv).await;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + EVENT_WAIT;
    while seen.len() < 4 {
        assert!(Instant::now() < deadline, "ticks of every symbol: {seen:?}");
        let ev = next_event(&mut ws, EVENT_WAIT).await;
        assert_eq!(ev["type"], "tick");
        let symbol = ev["data"]["symbol"].as_str().unwrap().to_owned();
        assert_eq!(ev["topic"], format!("tick:{symbol}"));
        assert!(num(&ev["data"], "ask") > num(&ev["data"], "bid"));
        assert!(ev["timestamp"].as_str().unwrap().ends_with('Z'));
        seen.insert(symbol);
    }

    let bad = post(&srv, "/settings", &json!({"changed": {"symbols": ["EUR USD"]}})).await;
    assert_error(&bad, 400, "invalid symbol list");
    assert_eq!(get(&srv, "/ticks/latest?symbol=GBPUSD").await.0, 200, "a refused change changes nothing");

    let body = json!({"changed": {"symbols": ["BTCUSD", "EURUSD"]}, "all": {"symbols": ["BTCUSD", "EURUSD"], "timeframes": ["H1"]}});
    assert_eq!(post(&srv, "/settings", &body).await, (200, json!({"applied": true})));
    let (status, tick) = get(&srv, "/ticks/latest?symbol=BTCUSD").await;
    assert_eq!(status, 200, "new symbol served at once");
    assert!(num(&tick, "bid") > 10_000.0 && decimals(num(&tick, "bid")) <= 2, "{tick}");
    assert_error(&get(&srv, "/ticks/latest?symbol=GBPUSD").await, 404, "removed symbol");
    assert_error(&get(&srv, "/ohlc?symbol=GBPUSD&timeframe=H1&count=2").await, 404, "removed symbol history");
    assert_eq!(get(&srv, "/ohlc?symbol=BTCUSD&timeframe=H1&count=2").await.0, 200);
    let names: Vec<String> =
        get(&srv, "/symbols").await.1.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().into()).collect();
    assert_eq!(names, ["BTCUSD", "EURUSD"]);

    // once a BTCUSD tick arrives, the removed symbols never tick again
    loop {
        if next_event(&mut ws, EVENT_WAIT).await["data"]["symbol"] == "BTCUSD" {
            break;
        }
    }
    for _ in 0..20 {
        let symbol = next_event(&mut ws, EVENT_WAIT).await["data"]["symbol"].as_str().unwrap().to_owned();
        assert!(symbol == "BTCUSD" || symbol == "EURUSD", "{symbol} still ticks");
    }
    srv.stop().await;
}

#[actix_rt::test]
async fn mt5_account_orders_and_positions() {
    let srv = start(Role::Mt5, |_| {}).await;
    let (status, account) = get(&srv, "/account").await;
    assert_eq!(status, 200);
    for key in ["login", "leverage", "balance", "equity", "margin", "margin_free", "margin_level"] {
        assert!(account[key].is_number(), "{key}: {account}");
    }
    assert_eq!(account["currency"], "USD");
    assert_eq!((num(&account, "balance"), num(&account, "margin")), (num(&account, "equity"), 0.0));
    assert_eq!(get(&srv, "/positions").await, (200, json!([])));

    let order =
        json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1, "magic": 42, "comment": "t"});
    let (status, result) = post(&srv, "/orders", &order).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["retcode"], 10009);
    assert_eq!(result["volume"], 0.1);
    let ticket = result["order"].as_u64().unwrap();
    assert!(ticket > 0 && result["deal"].as_u64().unwrap() > 0);
    let (_, positions) = get(&srv, "/positions").await;
    let p = &positions[0];
    assert_eq!((p["ticket"].as_u64(), &p["symbol"], &p["type"]), (Some(ticket), &json!("EURUSD"), &json!("buy")));
    assert_eq!((num(p, "volume"), num(p, "price_open")), (0.1, num(&result, "price")));
    for key in ["sl", "tp", "price_current", "profit", "swap", "time", "magic"] {
        assert!(p[key].is_number(), "{key}: {p}");
    }
    assert_eq!((p["magic"].clone(), p["comment"].clone()), (json!(42), json!("t")));
    let (_, account) = get(&srv, "/account").await;
    assert!(num(&account, "margin") > 0.0 && num(&account, "margin_level") > 0.0, "{account}");
    let floating = num(&account, "equity") - num(&account, "balance");
    assert!(floating < 0.0 && floating > -100.0, "paid the spread: {account}");

    // pending orders wait and can be cancelled
    let limit =
        json!({"symbol": "EURUSD", "side": "buy", "type": "limit", "volume": 0.2, "price": 0.5, "sl": 0.4, "tp": 0.6});
    let (status, placed) = post(&srv, "/orders", &limit).await;
    assert_eq!((status, placed["retcode"].clone(), placed["deal"].clone()), (200, json!(10008), json!(0)));
    let (_, pending) = get(&srv, "/orders").await;
    assert_eq!(pending[0]["ticket"], placed["order"]);
    assert_eq!(pending[0]["type"], "buy_limit");
    let cancel = delete(&srv, &format!("/orders/{}", placed["order"])).await;
    assert_eq!(cancel.0, 200, "{:?}", cancel.1);
    assert_eq!(get(&srv, "/orders").await.1, json!([]));

    // risk.max_volume: 1 by default, raised through settings
    let big = json!({"symbol": "XAUUSD", "side": "sell", "type": "market", "volume": 2});
    assert_error(&post(&srv, "/orders", &big).await, 400, "volume above max");
    assert_eq!(post(&srv, "/settings", &json!({"changed": {"risk.max_volume": 5}})).await.0, 200);
    let (status, sold) = post(&srv, "/orders", &big).await;
    assert_eq!((status, sold["retcode"].clone()), (200, json!(10009)), "{sold}");
    assert_error(&post(&srv, "/settings", &json!({"changed": {"risk.max_volume": 0}})).await, 400, "bad max volume");

    for (body, context) in [
        ("{", "invalid JSON"),
        ("[]", "not an object"),
        (r#"{"side":"buy","type":"market","volume":0.1}"#, "missing symbol"),
        (r#"{"symbol":"EURUSD","side":"long","type":"market","volume":0.1}"#, "bad side"),
        (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":0}"#, "zero volume"),
        (r#"{"symbol":"EURUSD","side":"buy","type":"limit","volume":0.1}"#, "limit without price"),
        (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":0.1,"sl":5}"#, "sl above a buy"),
        (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":0.1,"stop_loss":1}"#, "unknown field"),
    ] {
        assert_error(&post_raw(&srv, "/orders", body).await, 400, context);
    }

    let (status, closed) = delete(&srv, &format!("/positions/{ticket}")).await;
    assert_eq!((status, closed["retcode"].clone()), (200, json!(10009)), "{closed}");
    let (_, positions) = get(&srv, "/positions").await;
    assert!(positions.as_array().unwrap().iter().all(|p| p["ticket"] != json!(ticket)));
    let (_, account) = get(&srv, "/account").await;
    assert!(num(&account, "balance") < 10_000.0, "the spread was realised: {account}");
    assert_error(&delete(&srv, &format!("/positions/{ticket}")).await, 404, "closed twice");
    assert_error(&delete(&srv, "/positions/abc").await, 400, "bad ticket");
    assert_error(&delete(&srv, "/orders/1").await, 404, "no such order");
    srv.stop().await;
}

#[actix_rt::test]
async fn mt5_position_events_and_prices_move() {
    let srv = start(Role::Mt5, |_| {}).await;
    let mut ws = events(&srv).await;
    let order = json!({"symbol": "USDJPY", "side": "sell", "type": "market", "volume": 0.5});
    let (_, result) = post(&srv, "/orders", &order).await;
    let ev = next_event(&mut ws, EVENT_WAIT).await;
    assert_eq!((ev["type"].clone(), ev["topic"].clone()), (json!("position"), json!("position:USDJPY")));
    assert_eq!((ev["data"]["ticket"].clone(), ev["data"]["event"].clone()), (result["order"].clone(), json!("opened")));
    assert_eq!(ev["data"]["type"], "sell");
    // the price walks, and the position follows with `updated` events
    let ev = loop {
        let ev = next_event(&mut ws, EVENT_WAIT).await;
        if ev["data"]["event"] == "updated" {
            break ev;
        }
    };
    assert_eq!(ev["data"]["ticket"], result["order"]);
    let (_, positions) = get(&srv, "/positions?symbol=USDJPY").await;
    assert_eq!(positions.as_array().unwrap().len(), 1);
    assert_eq!(get(&srv, "/positions?symbol=EURUSD").await.1, json!([]));
    delete(&srv, &format!("/positions/{}", result["order"])).await;
    let ev = loop {
        let ev = next_event(&mut ws, EVENT_WAIT).await;
        if ev["data"]["event"] == "closed" {
            break ev;
        }
    };
    assert_eq!(ev["data"]["ticket"], result["order"]);
    srv.stop().await;
}

#[actix_rt::test]
async fn strategy_crud_start_stop_and_signals() {
    let srv = start(Role::Strategy, |_| {}).await;
    assert_eq!(get(&srv, "/strategies").await, (200, json!([])));
    let new = json!({"name": "MA cross", "symbol": "EURUSD", "timeframe": "H1", "parameters": {"fast": 9, "slow": 21}});
    let (status, created) = post(&srv, "/strategies", &new).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(
        (&created["name"], &created["symbol"], &created["timeframe"], &created["status"]),
        (&json!("MA cross"), &json!("EURUSD"), &json!("H1"), &json!("stopped"))
    );
    assert_eq!(created["parameters"], json!({"fast": 9, "slow": 21}));
    assert!(
        time::OffsetDateTime::parse(
            created["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    assert_eq!(get(&srv, "/strategies").await.1, json!([created]));
    assert_eq!(get(&srv, &format!("/strategies/{id}")).await, (200, created.clone()));

    let (status, updated) =
        put(&srv, &format!("/strategies/{id}"), &json!({"name": "Fast cross", "timeframe": "M5", "id": "ignored"}))
            .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (&updated["name"], &updated["timeframe"], &updated["id"]),
        (&json!("Fast cross"), &json!("M5"), &json!(id))
    );
    assert_eq!(updated["parameters"], created["parameters"]);

    for (body, context) in [
        (json!({"name": "", "symbol": "EURUSD", "timeframe": "H1", "parameters": {}}), "empty name"),
        (json!({"name": "x".repeat(65), "symbol": "EURUSD", "timeframe": "H1"}), "long name"),
        (json!({"name": "a", "symbol": "EUR USD", "timeframe": "H1"}), "bad symbol"),
        (json!({"name": "a", "symbol": "EURUSD", "timeframe": "H7"}), "bad timeframe"),
        (json!({"name": "a", "symbol": "EURUSD"}), "missing timeframe"),
        (json!({"name": "a", "symbol": "EURUSD", "timeframe": "H1", "parameters": [1]}), "parameters not an object"),
    ] {
        assert_error(&post(&srv, "/strategies", &body).await, 400, context);
    }
    assert_error(&post_raw(&srv, "/strategies", "{").await, 400, "bad JSON");
    assert_error(&put(&srv, &format!("/strategies/{id}"), &json!({"timeframe": "X"})).await, 400, "bad update");
    assert_error(&get(&srv, "/strategies/nope").await, 404, "unknown id");
    assert_error(&post(&srv, "/strategies/nope/start", &json!({})).await, 404, "start unknown");

    let mut ws = events(&srv).await;
    let (status, running) = post(&srv, &format!("/strategies/{id}/start"), &json!({})).await;
    assert_eq!((status, running["status"].clone()), (200, json!("running")));
    assert_error(&post(&srv, &format!("/strategies/{id}/start"), &json!({})).await, 409, "started twice");
    let ev = next_event(&mut ws, EVENT_WAIT).await;
    assert_eq!(
        (ev["type"].clone(), ev["topic"].clone()),
        (json!("strategy_signal"), json!(format!("strategy_signal:{id}")))
    );
    let data = &ev["data"];
    assert_eq!(
        (&data["strategy_id"], &data["symbol"], &data["timeframe"]),
        (&json!(id), &json!("EURUSD"), &json!("M5"))
    );
    assert!(data["side"] == "buy" || data["side"] == "sell", "{data}");
    assert!(num(data, "price") > 0.0 && num(data, "strength") > 0.0 && data["time"].as_i64().is_some(), "{data}");
    let (status, signals) = get(&srv, "/signals?limit=5").await;
    assert_eq!(status, 200);
    assert_eq!(signals[0], *data);
    assert_error(&get(&srv, "/signals?limit=0").await, 400, "limit 0");

    let (_, stopped) = post(&srv, &format!("/strategies/{id}/stop"), &json!({})).await;
    assert_eq!(stopped["status"], "stopped");
    assert_error(&post(&srv, &format!("/strategies/{id}/stop"), &json!({})).await, 409, "stopped twice");
    assert_eq!(delete(&srv, &format!("/strategies/{id}")).await, (200, json!({"id": id, "deleted": true})));
    assert_error(&get(&srv, &format!("/strategies/{id}")).await, 404, "deleted");
    assert_error(&delete(&srv, &format!("/strategies/{id}")).await, 404, "deleted twice");
    srv.stop().await;
}

#[actix_rt::test]
async fn patterns_by_symbol_and_latest() {
    let srv = start(Role::Pattern, |_| {}).await;
    let (status, list) = get(&srv, "/patterns?symbol=EURUSD&timeframe=M1").await;
    assert_eq!(status, 200, "{list}");
    for p in list.as_array().unwrap() {
        assert_eq!((&p["symbol"], &p["timeframe"]), (&json!("EURUSD"), &json!("M1")));
        assert!(p["pattern"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
        assert!(["bullish", "bearish", "neutral"].contains(&p["direction"].as_str().unwrap()), "{p}");
        assert!((0.0..=1.0).contains(&num(p, "confidence")), "{p}");
        assert!(p["id"].as_str().is_some() && p["detected_at"].as_str().unwrap().ends_with('Z'), "{p}");
    }
    let (status, latest) = get(&srv, "/patterns/latest").await;
    assert_eq!(status, 200);
    let latest = latest.as_array().unwrap();
    assert!(!latest.is_empty() && latest.len() <= 20, "{}", latest.len());
    let times: Vec<&str> = latest.iter().map(|p| p["detected_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let symbols: HashSet<&str> = latest.iter().map(|p| p["symbol"].as_str().unwrap()).collect();
    assert!(symbols.iter().all(|s| ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"].contains(s)), "{symbols:?}");
    assert!(get(&srv, "/patterns/latest?limit=3").await.1.as_array().unwrap().len() <= 3);
    let (_, all) = get(&srv, "/patterns?timeframe=H1&limit=1000").await;
    assert!(all.as_array().unwrap().iter().all(|p| p["timeframe"] == "H1"));

    assert_error(&get(&srv, "/patterns?symbol=EURUSD&timeframe=H9").await, 400, "bad timeframe");
    assert_error(&get(&srv, "/patterns?symbol=EUR%2FUSD").await, 400, "bad symbol");
    assert_error(&get(&srv, "/patterns/latest?limit=0").await, 400, "bad limit");
    srv.stop().await;
}

#[actix_rt::test]
async fn health_and_response_delay_faults() {
    let delay = Duration::from_millis(400);
    let srv = start(Role::Data, |a| {
        a.slow_health_ms = Some(400);
        a.response_delay_ms = Some(400);
    })
    .await;
    let t = Instant::now();
    assert_eq!(get(&srv, "/health").await.0, 200);
    assert!(t.elapsed() >= delay, "slow health");
    let t = Instant::now();
    assert_eq!(get(&srv, "/symbols").await.0, 200);
    assert!(t.elapsed() >= delay, "delayed route");
    let t = Instant::now();
    assert_error(&get(&srv, "/ticks/latest?symbol=NOPE").await, 404, "errors are delayed too");
    assert!(t.elapsed() >= delay);
    srv.stop().await;

    let srv = start(Role::Mt5, |a| a.response_delay_ms = Some(1500)).await;
    let t = Instant::now();
    assert_eq!(get(&srv, "/health").await.0, 200);
    assert!(t.elapsed() < Duration::from_millis(1500), "health is never delayed by --response-delay-ms");
    srv.stop().await;
}

#[actix_rt::test]
async fn fail_requests_answers_500_everywhere_but_health_and_settings() {
    let srv = start(Role::Mt5, |a| a.fail_requests = true).await;
    assert_eq!(get(&srv, "/health").await.0, 200);
    assert_eq!(post(&srv, "/settings", &json!({"changed": {}, "all": {}})).await.0, 200);
    assert_error(&get(&srv, "/account").await, 500, "account fails");
    assert_error(&get(&srv, "/nowhere").await, 500, "unknown routes fail too");
    let order = json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1});
    assert_error(&post(&srv, "/orders", &order).await, 500, "orders fail");
    srv.stop().await;
}

#[actix_rt::test]
async fn health_hangs_after_a_while_but_other_routes_answer() {
    let srv = start(Role::Pattern, |a| a.hang_health_after_ms = Some(300)).await;
    let quick = awc::Client::builder().timeout(Duration::from_millis(300)).finish();
    let url = srv.url();
    let res = quick.get(format!("{url}/health")).send().await;
    assert_eq!(res.map(|r| r.status().as_u16()).ok(), Some(200), "healthy at first");
    eventually(Duration::from_secs(10), "health to hang", || {
        let quick = quick.clone();
        let url = url.clone();
        async move {
            matches!(quick.get(format!("{url}/health")).send().await, Err(awc::error::SendRequestError::Timeout))
                .then_some(())
        }
    })
    .await;
    assert_eq!(get(&srv, "/patterns/latest?limit=1").await.0, 200, "other routes keep working");
    srv.stop().await;

    // 0: never healthy at all (a service that hangs during start-up)
    let srv = start(Role::Data, |a| a.hang_health_after_ms = Some(0)).await;
    let res = quick.get(format!("{}/health", srv.url())).send().await;
    assert!(matches!(res, Err(awc::error::SendRequestError::Timeout)), "{:?}", res.map(|r| r.status()));
    assert_eq!(get(&srv, "/symbols").await.0, 200);
    srv.stop().await;
}
