use super::*;
use crate::util::settings::parse_dotenv;
use crate::util::settings::tests::env;

#[test]
fn every_balancing_name_is_accepted() {
    for b in Balancing::ALL {
        let s = settings_from_env(&env(&[("LOAD_BALANCING_ALGORITHM", b.as_str())])).unwrap();
        assert_eq!(s.balancing, b);
    }
    let s = settings_from_env(&env(&[("LOAD_BALANCING_ALGORITHM", "shortest_expected_finish")])).unwrap();
    assert_eq!(s.balancing, Balancing::ShortestExpectedFinish);
}

#[test]
fn defaults_follow_the_design() {
    let s = settings_from_env(&env(&[])).unwrap();
    assert_eq!(s.port, 5000);
    assert_eq!(s.max_retries, 3);
    assert_eq!(s.worker_timeout, Duration::from_secs(30));
    assert_eq!(s.heartbeat_interval, Duration::from_secs(1));
    assert_eq!(s.task_timeout, None);
    assert_eq!(s.balancing, Balancing::RoundRobin);
    assert_eq!(s.db_path, PathBuf::from("data/orquesta.db"));
    assert_eq!(s.max_file_bytes, 256 << 20);
    assert_eq!(s.max_request_bytes, MAX_REQUEST_BYTES_DEFAULT);
    assert_eq!(s.http.max_connections, 1024);
    assert_eq!(s.http.body_timeout, Duration::from_secs(10));
    assert_eq!(s.results_dir, PathBuf::from("results/"));
}

#[test]
fn an_open_host_needs_a_token_or_insecure() {
    let e = settings_from_env(&env(&[("ORCHESTRATOR_HOST", "0.0.0.0")])).unwrap_err();
    assert!(
        e[0].starts_with("ORCHESTRATOR_HOST (--host): 0.0.0.0") && e[0].contains("ORQUESTA_TOKEN"),
        "{e:?}"
    );
    let s = settings_from_env(&env(&[("ORCHESTRATOR_HOST", "0.0.0.0"), ("ORQUESTA_TOKEN", "t")])).unwrap();
    assert_eq!((s.bind, s.token.is_some()), (BindVerdict::Safe, true));
    let s = settings_from_env(&env(&[
        ("ORCHESTRATOR_HOST", "::"),
        ("ORQUESTA_INSECURE", "true"),
    ]))
    .unwrap();
    assert_eq!((s.bind, s.token), (BindVerdict::Insecure, None));
    let e = settings_from_env(&env(&[("ORQUESTA_TOKEN", "")])).unwrap_err();
    assert!(e[0].contains("ORQUESTA_TOKEN is set but empty"), "{e:?}");
}

#[test]
fn the_seeds_env_is_accepted() {
    let (vars, _) = parse_dotenv(
        "TASK_DISTRIBUTION_INTERVAL=2.0    # Intervalo\nMAX_TASK_RETRIES=3\nRESULTS_STORAGE_PATH=results/\n\
         TASK_HISTORY_SIZE=1000\nWORKER_TIMEOUT=300\nLOAD_BALANCING_ALGORITHM=round_robin\n\
         PERFORMANCE_MONITORING=true\nMANUAL_MODE=true\n",
    );
    let s = settings_from_env(&vars).unwrap();
    assert_eq!(s.worker_timeout, Duration::from_secs(300));
}

#[test]
fn every_bad_value_is_named() {
    let e = settings_from_env(&env(&[
        ("MANUAL_MODE", "false"),
        ("WORKER_TIMEOUT", "soon"),
        ("LOAD_BALANCING_ALGORITHM", "random"),
        ("MAX_TASK_RETRIES", "-1"),
        ("ORCHESTRATOR_PORT", "70000"),
    ]))
    .unwrap_err();
    assert_eq!(e.len(), 5, "{e:?}");
    assert!(e
        .iter()
        .any(|p| p.contains("automatic task generation is not part")));
    assert!(e.iter().any(|p| p.starts_with("WORKER_TIMEOUT")));
    assert!(e.iter().any(|p| p.starts_with("LOAD_BALANCING_ALGORITHM")));
    assert!(e.iter().any(|p| p.starts_with("MAX_TASK_RETRIES")));
    assert!(e.iter().any(|p| p.starts_with("ORCHESTRATOR_PORT")));
}

#[test]
fn sooner_start_margins_are_read_checked_and_may_be_turned_off() {
    let s = settings_from_env(&env(&[])).unwrap();
    assert_eq!(s.sooner_starts, Some(SoonerStarts::default()));
    let s = settings_from_env(&env(&[
        ("SOONER_START_GAIN", "30"),
        ("SOONER_START_FRACTION", "0"),
        ("SOONER_START_SETTLE", "0.5"),
    ]))
    .unwrap();
    assert_eq!(
        s.sooner_starts,
        Some(SoonerStarts {
            min_gain: 30.0,
            min_fraction: 0.0,
            settle: 0.5
        })
    );
    for off in ["none", "off", " none "] {
        let s = settings_from_env(&env(&[("SOONER_START_GAIN", off)])).unwrap();
        assert_eq!(s.sooner_starts, None, "{off:?}");
    }
    let e = settings_from_env(&env(&[
        ("SOONER_START_GAIN", "0"),
        ("SOONER_START_FRACTION", "1"),
        ("SOONER_START_SETTLE", "-2"),
    ]))
    .unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().all(|m| !m.contains("  ")), "a run of spaces: {e:?}");
    assert!(
        e[0].starts_with("SOONER_START_GAIN: expected a number of seconds > 0, or none")
            && e[0].contains("found \"0\""),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("SOONER_START_FRACTION: expected a share of the wait from 0")
            && e[1].contains("found \"1\""),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("SOONER_START_SETTLE: expected a number of seconds ≥ 0"),
        "{e:?}"
    );
    let e = settings_from_env(&env(&[
        ("SOONER_START_GAIN", "soon"),
        ("SOONER_START_FRACTION", "half"),
    ]))
    .unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn an_empty_path_is_refused_with_its_default() {
    let e = settings_from_env(&env(&[("RESULTS_STORAGE_PATH", ""), ("TASK_QUEUE_DIR", " ")])).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("TASK_QUEUE_DIR: expected a path, found an empty value")
            && e[1].starts_with("RESULTS_STORAGE_PATH: expected a path, found an empty value")
            && e[1].contains("\"results/\""),
        "{e:?}"
    );
}
