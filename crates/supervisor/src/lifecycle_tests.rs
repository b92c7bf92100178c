//! The rules of SPEC §7 as tables: each row feeds a script of events at fake times into one
//! [`Lifecycle`] and checks the effects of every step. An expected fragment must appear in the
//! rendered effects, in order; a fragment starting with `!` must not appear at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use gateway_core::ServiceName;

fn rules(tweak: fn(&mut Rules)) -> Rules {
    let mut config = ServiceConfig::with_defaults(ServiceName::parse("data").unwrap(), 5001);
    config.command = Some(vec!["python".into()]);
    let health = HealthConfig {
        interval: Duration::from_millis(1_000),
        failure_threshold: 3,
        startup_timeout: Duration::from_millis(10_000),
        startup_probe_interval: Duration::from_millis(25),
        ..HealthConfig::default()
    };
    let mut r = Rules::of(&config, &health);
    r.stop_timeout = Duration::from_millis(3_000);
    r.backoff = BackoffPolicy::from_config(&registry::BackoffConfig {
        first: Duration::from_millis(0),
        initial: Duration::from_millis(250),
        multiplier: 2.0,
        max: Duration::from_millis(4_000),
        jitter: 0.0,
        reset_after: Duration::from_millis(60_000),
    });
    r.max_failures = 5;
    r.failure_window = Duration::from_secs(300);
    tweak(&mut r);
    r
}

fn cmd(c: Command, t: Ticket) -> Event {
    Event::Command(c, t)
}
fn healthy() -> Event {
    Event::Probed(ProbeResult::Http(Check { healthy: true, latency_ms: 3, error: None, service: Some("data".into()) }))
}
fn failed() -> Event {
    Event::Probed(ProbeResult::Http(Check {
        healthy: false,
        latency_ms: 2_000,
        error: Some("timeout".into()),
        service: None,
    }))
}
fn exit(code: i32) -> Event {
    Event::Exited(Exit { code: Some(code), signal: None, output: vec!["[stderr] boom".into()] })
}
fn killed() -> Event {
    Event::Exited(Exit { code: None, signal: Some("SIGKILL".into()), output: vec![] })
}
fn taken(service: Option<&str>) -> Event {
    let answer = ProbeResult::Http(Check {
        healthy: service.is_some(),
        latency_ms: 1,
        error: None,
        service: service.map(str::to_owned),
    });
    Event::PortChecked(PortCheck::Taken {
        answer,
        owner: Some(Owner { pid: 77, command: Some("python app.py".into()) }),
    })
}

/// At this many ms, this event, these fragments expected.
type Step = (u64, Event, Vec<&'static str>);
/// A rule's name, its tweak of the rules, its script.
type Row = (&'static str, fn(&mut Rules), Vec<Step>);

/// Start, spawn as pid 42 and become online at 100 ms.
fn online() -> Vec<Step> {
    vec![
        (0, cmd(Command::Start, 1), vec!["check-port"]),
        (0, Event::PortChecked(PortCheck::Free), vec!["spawn"]),
        (
            0,
            Event::Spawned { pid: 42 },
            vec!["[status=starting sub=- kind=Managed pid=42 failures=0 next=-]", "reply#1=Done"],
        ),
        (0, Event::Timer, vec!["probe-tcp"]),
        (100, healthy(), vec!["[status=online sub=- failures=0 check next=-]", "healthy 100 ms after spawn"]),
    ]
}

/// A failure, then the restart it scheduled: `at` the failure, restart after `delay` ms.
fn crash_and_restart(at: u64, delay: u64, expect: &'static str) -> Vec<Step> {
    vec![
        (at, exit(1), vec![expect]),
        (at + delay, Event::Timer, vec!["[next=- restarted]", "check-port"]),
        (at + delay, Event::PortChecked(PortCheck::Free), vec!["spawn"]),
        (at + delay, Event::Spawned { pid: 43 }, vec!["status=starting"]),
    ]
}

fn chain(parts: Vec<Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}

fn table() -> Vec<Row> {
    vec![
        ("start, spawn, healthy", |_| {}, online()),
        (
            "exit during startup: error with the exit code and the last output, then backoff",
            |_| {},
            vec![
                (0, cmd(Command::Start, 1), vec!["check-port"]),
                (0, Event::PortChecked(PortCheck::Free), vec!["spawn"]),
                (0, Event::Spawned { pid: 42 }, vec!["status=starting"]),
                (
                    50,
                    exit(3),
                    vec![
                        "[status=error sub=- pid=- exit=Some(3)/None error=exited during startup with exit code 3; last output:\n[stderr] boom]",
                        "[status=error sub=backoff pid=- next=0ms",
                    ],
                ),
            ],
        ),
        (
            "failed probes below the threshold keep it online; the threshold takes it offline and restarts",
            |_| {},
            chain(vec![
                online(),
                vec![
                    (1_100, Event::Timer, vec!["probe-http"]),
                    (1_200, failed(), vec!["[failures=1 check]", "!status=offline"]),
                    (2_200, Event::Timer, vec!["probe-http"]),
                    (2_300, failed(), vec!["[failures=2 check]", "!status=offline"]),
                    (3_300, Event::Timer, vec!["probe-http"]),
                    (
                        3_400,
                        failed(),
                        vec!["[status=offline sub=- failures=3 check]", "restarting", "[sub=stopping]", "signal"],
                    ),
                    (
                        3_500,
                        killed(),
                        vec![
                            "stopped (signal SIGKILL)",
                            "[status=offline sub=backoff pid=- next=0ms error=unhealthy: 3 consecutive",
                        ],
                    ),
                ],
            ]),
        ),
        (
            "first restart immediate, then initial × multiplier^(k-1), capped",
            |_| {},
            chain(vec![
                online(),
                crash_and_restart(200, 0, "next=0ms"),
                crash_and_restart(300, 250, "next=250ms"),
                crash_and_restart(600, 500, "next=500ms"),
                crash_and_restart(1_200, 1_000, "next=1000ms"),
            ]),
        ),
        (
            "a healthy run of reset_after_ms starts the sequence over",
            |r| r.max_failures = 100,
            chain(vec![
                online(),
                crash_and_restart(200, 0, "next=0ms"),
                crash_and_restart(300, 250, "next=250ms"),
                vec![(600, Event::Timer, vec!["probe-tcp"]), (650, healthy(), vec!["status=online"])],
                // 60 s of healthy uptime later, the next failure is a first one again.
                crash_and_restart(60_700, 0, "next=0ms"),
            ]),
        ),
        (
            "max_failures within the window: error/crash_loop, retrying at the cap",
            |r| r.max_failures = 3,
            chain(vec![
                online(),
                crash_and_restart(200, 0, "sub=backoff pid=- next=0ms"),
                crash_and_restart(300, 250, "sub=backoff pid=- next=250ms"),
                crash_and_restart(
                    600,
                    4_000,
                    "[status=error sub=crash_loop pid=- next=4000ms error=crash loop: 3 failures within 300 s",
                ),
                vec![
                    // The retry shows starting/crash_loop until it is healthy.
                    (4_700, Event::Timer, vec!["probe-tcp"]),
                    (4_800, exit(1), vec!["[status=error sub=crash_loop pid=- next=4000ms"]),
                ],
            ]),
        ),
        (
            "a manual start ends the crash loop and starts a new sequence",
            |r| r.max_failures = 2,
            chain(vec![
                online(),
                crash_and_restart(200, 0, "sub=backoff"),
                vec![
                    (300, exit(1), vec!["sub=crash_loop pid=- next=4000ms"]),
                    (400, cmd(Command::Start, 2), vec!["[sub=- next=-]", "check-port"]),
                    (400, Event::PortChecked(PortCheck::Free), vec!["spawn"]),
                    (
                        400,
                        Event::Spawned { pid: 44 },
                        vec!["[status=starting sub=- kind=Managed pid=44", "reply#2=Done"],
                    ),
                ],
            ]),
        ),
        (
            "stop: the stop signal, a kill after stop_timeout_ms, stopped when the tree is gone",
            |_| {},
            chain(vec![
                online(),
                vec![
                    (500, cmd(Command::Stop, 2), vec!["[sub=stopping]", "signal", "!reply"]),
                    (3_500, Event::Timer, vec!["still running 3000 ms after the stop signal", "terminate"]),
                    (
                        3_510,
                        killed(),
                        vec![
                            "stopped (signal SIGKILL)",
                            "[status=stopped sub=- pid=- failures=0 next=-]",
                            "reply#2=Done",
                        ],
                    ),
                    (3_600, cmd(Command::Stop, 3), vec!["reply#3=AlreadyStopped"]),
                ],
            ]),
        ),
        (
            "a stop signal that cannot be raised turns the stop into a kill at once",
            |_| {},
            chain(vec![
                online(),
                vec![
                    (500, cmd(Command::Stop, 2), vec!["signal"]),
                    (
                        500,
                        Event::SignalFailed { reason: "no console".into() },
                        vec!["cannot send the stop signal (no console)", "terminate"],
                    ),
                    (510, killed(), vec!["status=stopped", "reply#2=Done"]),
                ],
            ]),
        ),
        (
            "stop_signal SIGKILL kills at once",
            |r| r.stop_kills = true,
            chain(vec![online(), vec![(500, cmd(Command::Stop, 2), vec!["terminate", "!signal"])]]),
        ),
        (
            "a tree that survives every kill is given up and the service counts as stopped",
            |_| {},
            chain(vec![
                online(),
                vec![
                    (500, cmd(Command::Stop, 2), vec!["signal"]),
                    (3_500, Event::Timer, vec!["terminate"]),
                    (8_500, Event::Timer, vec!["terminate"]),
                    (13_500, Event::Timer, vec!["abandon", "status=stopped", "reply#2=Done"]),
                ],
            ]),
        ),
        (
            "adopt: the port answers as this service and on_port_conflict = adopt",
            |r| r.on_port_conflict = PortConflictPolicy::Adopt,
            vec![
                (0, cmd(Command::Start, 1), vec!["check-port"]),
                (
                    0,
                    taken(Some("data")),
                    vec![
                        "[status=online sub=adopted kind=Adopted pid=77 failures=0 check next=-]",
                        "reply#1=Done",
                        "!spawn",
                    ],
                ),
                (10, cmd(Command::Stop, 2), vec!["reply#2=NotManaged"]),
                (1_000, Event::Timer, vec!["probe-http"]),
                (1_010, failed(), vec!["[failures=1 check]"]),
                (2_010, Event::Timer, vec!["probe-http"]),
                (2_020, failed(), vec!["[failures=2 check]"]),
                (3_020, Event::Timer, vec!["probe-http"]),
                (
                    3_030,
                    failed(),
                    vec![
                        "[status=offline sub=- kind=Managed pid=- failures=3 check]",
                        "stopped answering",
                        "sub=backoff pid=- next=0ms",
                    ],
                ),
            ],
        ),
        (
            "port conflict: error/port_conflict naming the owner, no restart loop",
            |_| {},
            vec![
                (0, cmd(Command::Start, 1), vec!["check-port"]),
                (
                    0,
                    taken(None),
                    vec![
                        "[status=error sub=port_conflict pid=- next=- error=port 5001 is held by pid 77 (python app.py); free the port and start again]",
                        "reply#1=Done",
                        "!spawn",
                    ],
                ),
                (60_000, Event::Timer, vec!["!check-port"]),
            ],
        ),
        (
            "port conflict with a copy of this service that is not to be adopted says how to adopt it",
            |_| {},
            vec![
                (0, cmd(Command::Start, 1), vec![]),
                (0, taken(Some("data")), vec!["which answers as data; set on_port_conflict"]),
            ],
        ),
        (
            "restart = never: an exit leaves it offline",
            |r| r.restart = RestartPolicy::Never,
            chain(vec![
                online(),
                vec![(
                    500,
                    exit(1),
                    vec![
                        "[status=offline sub=- pid=- exit=Some(1)/None error=exited unexpectedly with exit code 1]",
                        "!backoff",
                    ],
                )],
            ]),
        ),
        (
            "restart = never: unhealthy stays offline and running",
            |r| {
                r.restart = RestartPolicy::Never;
                r.failure_threshold = 1;
            },
            chain(vec![
                online(),
                vec![
                    (1_100, Event::Timer, vec!["probe-http"]),
                    (1_200, failed(), vec!["status=offline", "!signal"]),
                    (1_300, cmd(Command::Start, 2), vec!["reply#2=AlreadyRunning"]),
                ],
            ]),
        ),
        (
            "restart = always restarts after a clean exit",
            |r| r.restart = RestartPolicy::Always,
            chain(vec![
                online(),
                vec![(500, exit(0), vec!["exited with exit code 0", "status=offline", "sub=backoff pid=- next=0ms"])],
            ]),
        ),
        (
            "restart = on-failure: a clean exit stays offline, a failing one restarts",
            |_| {},
            chain(vec![
                online(),
                vec![(500, exit(0), vec!["[status=offline sub=- pid=- exit=Some(0)/None]", "!backoff"])],
                vec![
                    (600, cmd(Command::Start, 2), vec!["check-port"]),
                    (600, Event::PortChecked(PortCheck::Free), vec!["spawn"]),
                    (600, Event::Spawned { pid: 45 }, vec!["status=starting"]),
                    (700, exit(2), vec!["sub=backoff pid=- next=0ms"]),
                ],
            ]),
        ),
        (
            "startup timeout: killed, error with the last probe's error, backoff",
            |_| {},
            vec![
                (0, cmd(Command::Start, 1), vec![]),
                (0, Event::PortChecked(PortCheck::Free), vec![]),
                (0, Event::Spawned { pid: 42 }, vec![]),
                (0, Event::Timer, vec!["probe-tcp"]),
                (10, failed(), vec!["startup probe failed: timeout"]),
                (10_000, Event::Timer, vec!["[sub=stopping]", "terminate"]),
                (
                    10_010,
                    killed(),
                    vec![
                        "[status=error sub=- pid=- error=not healthy within 10000 ms after spawn (last health check: timeout); killed; no output]",
                        "sub=backoff",
                    ],
                ),
            ],
        ),
        (
            "commands: already running, already stopped, not managed",
            |_| {},
            chain(vec![
                vec![(0, cmd(Command::Stop, 9), vec!["reply#9=AlreadyStopped"])],
                online(),
                vec![(200, cmd(Command::Start, 2), vec!["reply#2=AlreadyRunning", "!check-port"])],
            ]),
        ),
        (
            "an external service is monitored, never started",
            |r| r.external = true,
            vec![
                (0, cmd(Command::Start, 1), vec!["reply#1=NotManaged"]),
                (0, Event::Monitor, vec!["[status=starting sub=-]"]),
                (0, Event::Timer, vec!["probe-http"]),
                (5, failed(), vec!["[status=offline sub=- failures=1 check]"]),
                (1_005, Event::Timer, vec!["probe-http"]),
                (1_010, healthy(), vec!["[status=online sub=- failures=0 check]"]),
            ],
        ),
        (
            "spawn failure: error with the OS reason, backoff, the reply says so",
            |_| {},
            vec![
                (0, cmd(Command::Start, 1), vec!["check-port"]),
                (0, Event::PortChecked(PortCheck::Free), vec!["spawn"]),
                (
                    0,
                    Event::SpawnFailed {
                        program: "python".into(),
                        reason: "No such file or directory (os error 2)".into(),
                    },
                    vec![
                        "[status=error sub=- pid=- error=cannot start `python`: No such file or directory (os error 2)]",
                        "sub=backoff",
                        "reply#1=SpawnFailed",
                    ],
                ),
            ],
        ),
        (
            "spawn failure with restart = never: no backoff",
            |r| r.restart = RestartPolicy::Never,
            vec![
                (0, cmd(Command::Start, 1), vec![]),
                (0, Event::PortChecked(PortCheck::Free), vec![]),
                (
                    0,
                    Event::SpawnFailed { program: "x".into(), reason: "denied".into() },
                    vec!["status=error", "!backoff", "reply#1=SpawnFailed"],
                ),
            ],
        ),
        (
            "restart of a running service counts a restart and launches again after the stop",
            |_| {},
            chain(vec![
                online(),
                vec![
                    (500, cmd(Command::Restart, 2), vec!["signal", "!check-port"]),
                    (600, exit(0), vec!["stopped (exit code 0)", "[sub=- next=- restarted]", "check-port"]),
                    (600, Event::PortChecked(PortCheck::Free), vec!["spawn"]),
                    (600, Event::Spawned { pid: 50 }, vec!["pid=50", "reply#2=Done"]),
                ],
            ]),
        ),
        (
            "stop during backoff cancels the pending restart",
            |_| {},
            chain(vec![
                online(),
                vec![
                    (200, exit(1), vec!["sub=backoff"]),
                    (200, cmd(Command::Stop, 2), vec!["pending restart cancelled", "status=stopped", "reply#2=Done"]),
                    (10_000, Event::Timer, vec!["!check-port"]),
                ],
            ]),
        ),
        (
            "shutdown stops what runs and ends the task",
            |_| {},
            chain(vec![
                online(),
                vec![
                    (500, cmd(Command::Shutdown, 2), vec!["signal", "!finished"]),
                    (600, exit(0), vec!["status=stopped", "reply#2=Done", "finished"]),
                ],
            ]),
        ),
        (
            "shutdown of a stopped service ends at once",
            |_| {},
            vec![(0, cmd(Command::Shutdown, 1), vec!["reply#1=Done", "finished", "!status"])],
        ),
    ]
}

fn render(effects: &[Effect]) -> String {
    effects.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ; ")
}

#[test]
fn every_rule_of_the_lifecycle() {
    for (name, tweak, steps) in table() {
        let t0 = Instant::now();
        let mut machine = Lifecycle::new(rules(tweak));
        for (i, (at, event, expected)) in steps.into_iter().enumerate() {
            let shown = format!("{event:?}");
            let effects = machine.on(event, t0 + Duration::from_millis(at));
            let text = render(&effects);
            let mut rest = text.as_str();
            for fragment in expected {
                if let Some(absent) = fragment.strip_prefix('!') {
                    assert!(
                        !text.contains(absent),
                        "{name}: step {i} ({shown}) must not contain {absent:?}; got: {text}"
                    );
                    continue;
                }
                match rest.find(fragment) {
                    Some(pos) => rest = &rest[pos + fragment.len()..],
                    None => panic!("{name}: step {i} ({shown}) lacks {fragment:?} (in order); got: {text}"),
                }
            }
        }
    }
}

#[test]
fn backoff_jitter_stays_within_its_bounds() {
    for _ in 0..50 {
        let t0 = Instant::now();
        let mut machine = Lifecycle::new(rules(|r| {
            r.backoff = BackoffPolicy::from_config(&registry::BackoffConfig {
                first: Duration::from_millis(1_000),
                initial: Duration::from_millis(1_000),
                multiplier: 2.0,
                max: Duration::from_millis(60_000),
                jitter: 0.1,
                reset_after: Duration::from_millis(60_000),
            });
        }));
        for e in online() {
            machine.on(e.1, t0 + Duration::from_millis(e.0));
        }
        machine.on(exit(1), t0 + Duration::from_millis(200));
        let wait = machine.poll_timeout().unwrap() - (t0 + Duration::from_millis(200));
        assert!(
            (Duration::from_millis(900)..=Duration::from_millis(1_100)).contains(&wait),
            "first restart of 1 000 ms ± 10 % waited {wait:?}"
        );
    }
}

#[test]
fn timers_follow_the_phase() {
    let t0 = Instant::now();
    let mut machine = Lifecycle::new(rules(|_| {}));
    assert_eq!(machine.poll_timeout(), None, "a stopped service has no timer");
    for (at, e, _) in online() {
        machine.on(e, t0 + Duration::from_millis(at));
    }
    assert_eq!(machine.poll_timeout(), Some(t0 + Duration::from_millis(1_100)), "the next probe, interval_ms after");
    // A passive check moves the probe forward, but not closer than 100 ms after the last one.
    machine.on(Event::ProbeNow, t0 + Duration::from_millis(150));
    assert_eq!(machine.poll_timeout(), Some(t0 + Duration::from_millis(150)));
    machine.on(Event::Timer, t0 + Duration::from_millis(150));
    assert_eq!(machine.poll_timeout(), None, "no timer while a probe is in flight");
    machine.on(healthy(), t0 + Duration::from_millis(160));
    machine.on(Event::ProbeNow, t0 + Duration::from_millis(170));
    assert_eq!(
        machine.poll_timeout(),
        Some(t0 + Duration::from_millis(250)),
        "coalesced to 100 ms after the last probe"
    );
    // While stopping, commands wait (the driver holds them back) and the timer is the timeout.
    machine.on(Event::Command(Command::Stop, 5), t0 + Duration::from_millis(300));
    assert!(machine.stopping());
    assert_eq!(machine.poll_timeout(), Some(t0 + Duration::from_millis(3_300)));
}
