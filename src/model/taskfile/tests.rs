//! The task-file reader's tests: shapes, every problem listed, limits,
//! duplicate keys, and a fuzz for panics.

use serde_json::json;

use super::*;

fn validator() -> Validator {
    Validator::standard()
}

fn task(id: &str) -> Value {
    json!({"task_id": id, "algorithm": "python",
           "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}})
}

fn problems(bytes: &[u8]) -> Vec<String> {
    parse_bytes(bytes, &validator())
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn a_good_file_with_a_wrong_total_is_a_warning() {
    let file = json!({"metadata": {"total_tasks": 5, "created_by": "me"}, "tasks": [task("a"), task("b")]});
    let batch = parse_bytes(file.to_string().as_bytes(), &validator()).unwrap();
    assert_eq!(batch.tasks.len(), 2);
    assert_eq!(batch.warnings.len(), 1);
    assert_eq!(batch.metadata.unwrap()["created_by"], "me");
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let file = json!({"metadata": {"total_tasks": "two"},
        "tasks": [task("a"), task("a"), {"task_id": "c", "algorithm": "java"}]});
    let p = problems(file.to_string().as_bytes());
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p[0].starts_with("metadata.total_tasks: expected a whole number"));
    assert!(p[1].starts_with("tasks[1].task_id: duplicate id \"a\", also used by tasks[0]"));
    assert!(p[2].starts_with("tasks[2].algorithm: expected one of"));
    // the parameters are checked too, whatever the algorithm
    assert!(p[3].starts_with("tasks[2].parameters: required"));
}

#[test]
fn shapes_that_are_not_task_files() {
    assert!(problems(b"")[0].contains("empty"));
    assert!(problems(b"{\"tasks\": [")[0].contains("ends too early"));
    assert!(problems(b"[]")[0].contains("expected a JSON object"));
    assert!(problems(b"{}")[0].starts_with("tasks: required"));
    assert!(problems(b"{\"tasks\": {}}")[0].starts_with("tasks: expected an array"));
    assert!(problems(b"{\"tasks\": []}")[0].contains("empty"));
    assert!(problems(&[b'{', 0xff, b'}'])[0].contains("UTF-8"));
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(problems(deep.as_bytes())[0].contains("nested"));
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(json!({"tasks": [task("a")]}).to_string().as_bytes());
    assert_eq!(parse_bytes(&bytes, &validator()).unwrap().tasks.len(), 1);
}

#[test]
fn a_key_given_twice_is_refused_with_the_key_and_where() {
    let file = r#"{"tasks": [
        {"task_id": "a", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}},
        {"task_id": "b", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1},
         "parameters": {"num_particles": 100, "num_steps": 10, "seed": 2}},
        {"task_id": "c", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1, "seed": 2}}
    ]}"#;
    let r = parse_bytes(file.as_bytes(), &validator()).unwrap_err();
    assert!(r.malformed);
    let p: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("tasks[1]: duplicate key \"parameters\""),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("tasks[2].parameters: duplicate key \"seed\""),
        "{p:?}"
    );
    let p = problems(br#"{"tasks": [], "metadata": {}, "tasks": []}"#);
    assert!(p[0].starts_with("duplicate key \"tasks\""), "{p:?}");
    let p = problems(br#"{"metadata": {"total_tasks": 1, "total_tasks": 2}, "tasks": []}"#);
    assert!(
        p[0].starts_with("metadata: duplicate key \"total_tasks\""),
        "{p:?}"
    );
    // the same in a request body
    let r = parse_request(br#"{"task_id": "a", "task_id": "b"}"#, &validator()).unwrap_err();
    assert!(r.malformed && r.problems[0].to_string().contains("duplicate key \"task_id\""));
}

#[test]
fn a_task_larger_than_a_worker_accepts_is_refused_by_id_before_parsing() {
    let mut t = task("huge");
    t["parameters"]["junk"] = json!(vec![1.5; MAX_TASK_BYTES / 3]);
    let file = json!({"tasks": [task("ok"), t]}).to_string();
    let p = problems(file.as_bytes());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("tasks[1]: task \"huge\" is ")
            && p[0].contains(&format!("limit of {MAX_TASK_BYTES} bytes")),
        "{p:?}"
    );
    // as one request body
    let r = parse_request(t.to_string().as_bytes(), &validator()).unwrap_err();
    assert!(
        !r.malformed && r.problems[0].message.starts_with("task \"huge\" is "),
        "{r:?}"
    );
}

#[test]
fn a_task_whose_numbers_grow_when_stored_is_measured_as_stored() {
    // "1e15" is written in 4 bytes and stored as 1000000000000000.0
    let mut t = task("grows");
    let n = MAX_TASK_BYTES / 6;
    t["parameters"]["junk"] = Value::Null;
    let text = t
        .to_string()
        .replace("null", &format!("[{}]", vec!["1e15"; n].join(",")));
    assert!(text.len() < MAX_TASK_BYTES);
    let r = parse_request(text.as_bytes(), &validator()).unwrap_err();
    assert!(
        r.problems[0]
            .message
            .contains("bytes of JSON, more than the limit"),
        "{r:?}"
    );
}

#[test]
fn unknown_fields_are_kept_up_to_a_limit() {
    let mut t = task("notes");
    t["owner"] = json!("ana");
    assert_eq!(
        parse_value(&json!({"tasks": [t.clone()]}), &validator())
            .unwrap()
            .tasks[0]
            .extra["owner"],
        "ana"
    );
    for i in 0..200 {
        t[format!("field_{i}")] = json!("x".repeat(50));
    }
    let p = problems(json!({"tasks": [t]}).to_string().as_bytes());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("tasks[0]: task \"notes\" has ")
            && p[0].contains(&format!("limit of {MAX_EXTRA_BYTES} kept per task")),
        "{p:?}"
    );
}

#[test]
fn a_request_is_one_task_a_list_or_a_file() {
    let v = validator();
    assert_eq!(
        parse_request(task("a").to_string().as_bytes(), &v)
            .unwrap()
            .tasks
            .len(),
        1
    );
    let list = json!([task("a"), task("b")]).to_string();
    assert_eq!(parse_request(list.as_bytes(), &v).unwrap().tasks.len(), 2);
    let file = json!({"metadata": {"total_tasks": 1}, "tasks": [task("a")]}).to_string();
    assert_eq!(parse_request(file.as_bytes(), &v).unwrap().tasks.len(), 1);
    let r = parse_request(b"42", &v).unwrap_err();
    assert!(!r.malformed && r.problems[0].message.contains("expected a task object"));
    let r = parse_request(b"{\"task_id\": ", &v).unwrap_err();
    assert!(r.malformed && r.problems[0].message.contains("malformed JSON"));
    let p = parse_request(json!([task("a"), task("a")]).to_string().as_bytes(), &v).unwrap_err();
    assert!(p.problems[0]
        .to_string()
        .starts_with("tasks[1].task_id: duplicate id"));
}

#[test]
fn too_many_particles_names_the_setting_not_a_worker() {
    let mut t = task("big");
    t["parameters"]["num_particles"] = json!(3_000_000);
    let p = problems(json!({"tasks": [t]}).to_string().as_bytes());
    assert!(
        p[0].contains("more than the limit MAX_PARTICLES = 2000000"),
        "{p:?}"
    );
    assert!(!p[0].contains("worker's limit"), "{p:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 2000, ..Default::default() })]

    /// No input, however broken, makes the parser panic.
    #[test]
    fn any_bytes_are_answered_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_bytes(&bytes, &validator());
    }

    /// Text that is nearly a task file: a valid file with one byte
    /// changed, cut, or spliced.
    #[test]
    fn mangled_task_files_are_answered_without_panic(
        at in 0usize..400,
        byte in proptest::num::u8::ANY,
        cut in 0usize..400,
    ) {
        let good = json!({"metadata": {"total_tasks": 2}, "tasks": [task("a"),
            {"task_id": "b", "algorithm": "cython", "priority": "low",
             "parameters": {"num_particles": 400, "num_steps": 10, "seed": 18446744073709551615u64, "dt": 0.001}}]})
            .to_string()
            .into_bytes();
        let mut changed = good.clone();
        let i = at % changed.len();
        changed[i] = byte;
        let _ = parse_bytes(&changed, &validator());
        let _ = parse_bytes(&good[..cut.min(good.len())], &validator());
        let mut spliced = good[..i].to_vec();
        spliced.extend_from_slice(&good[cut.min(good.len())..]);
        let _ = parse_bytes(&spliced, &validator());
    }

    /// Any JSON value where a task file, a task or its parameters go.
    #[test]
    fn any_json_is_answered_without_panic(v in json_value()) {
        let _ = parse_value(&v, &validator());
        let _ = parse_value(&json!({"tasks": [v.clone()]}), &validator());
        let _ = parse_value(&json!({"tasks": [{"task_id": "t", "algorithm": "python", "parameters": v.clone()}]}), &validator());
        let _ = parse_value(&json!({"metadata": v, "tasks": [task("t")]}), &validator());
    }
}

/// Arbitrary JSON, nested a few levels, with the values that matter to
/// a validator (negative, huge, fractional, non-ASCII, empty).
fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("python"),
            Just("cython"),
            Just("high"),
            Just("task_1"),
            Just("__sleep")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("task_id".to_string()),
                    Just("algorithm".to_string()),
                    Just("parameters".to_string()),
                    Just("num_particles".to_string()),
                    Just("num_steps".to_string()),
                    Just("seed".to_string()),
                    Just("priority".to_string()),
                    Just("tasks".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn sha256_of_known_text() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
