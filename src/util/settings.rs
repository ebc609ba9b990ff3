//! Configuration of both processes: the `.env` file (dotenv), then the
//! environment, then command-line flags, each overriding the one before.
//! The command line inserts its flags into the env map; each process's
//! settings are then a pure function of that map that lists every problem:
//! [`settings_from_env`] (orchestrator), [`worker_settings_from_env`]
//! (worker node). [`EnvReader`] holds the parsing both share.
//!
//! Adding a setting: one line in its table ([`SETTINGS`] or
//! [`WORKER_SETTINGS`]: name, default, meaning), one read in its function.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::util::tls::{tls_from_env, Tls};
use crate::util::token::{check_bind, token_from_env, BindVerdict, Token};

/// A setting's table row: variable, default, meaning.
pub type SettingDoc = (&'static str, &'static str, &'static str);

// The security rows both processes' tables hold word for word (the token
// itself and the CA are described per process: what they are sent with or
// trusted for differs).

/// `ORQUESTA_TOKEN_FILE`, in [`SETTINGS`] and [`WORKER_SETTINGS`].
pub(crate) const TOKEN_FILE_ROW: SettingDoc = (
    "ORQUESTA_TOKEN_FILE",
    "",
    "a file holding ORQUESTA_TOKEN (one trailing newline dropped); not both",
);
/// `ORQUESTA_INSECURE`, in both tables.
pub(crate) const INSECURE_ROW: SettingDoc = (
    "ORQUESTA_INSECURE",
    "false",
    "true: listen on a non-loopback --host without a token (--insecure)",
);
/// `ORQUESTA_TLS_CERT`, in both tables.
pub(crate) const TLS_CERT_ROW: SettingDoc = (
    "ORQUESTA_TLS_CERT",
    "",
    "PEM certificate (chain): serve HTTPS only (with ORQUESTA_TLS_KEY)",
);
/// `ORQUESTA_TLS_KEY`, in both tables.
pub(crate) const TLS_KEY_ROW: SettingDoc = ("ORQUESTA_TLS_KEY", "", "PEM private key of ORQUESTA_TLS_CERT");

/// What one HTTP server allows its clients (`MAX_CONNECTIONS`,
/// `REQUEST_BODY_TIMEOUT`); both processes' tables hold the same two rows
/// (the consts below), read by [`EnvReader::http_limits`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpLimits {
    /// Open connections at most; more wait in the listen queue.
    pub max_connections: usize,
    /// How long a request body may take to arrive (408 after).
    pub body_timeout: Duration,
}

/// `MAX_CONNECTIONS`, in [`SETTINGS`] and [`WORKER_SETTINGS`].
pub(crate) const MAX_CONNECTIONS_ROW: SettingDoc = (
    "MAX_CONNECTIONS",
    "1024",
    "open HTTP connections at most; more wait to be accepted",
);
/// `REQUEST_BODY_TIMEOUT`, in both tables.
pub(crate) const REQUEST_BODY_TIMEOUT_ROW: SettingDoc = (
    "REQUEST_BODY_TIMEOUT",
    "10",
    "seconds a request body may take to arrive (408 after)",
);

/// `LOG_MAX_BYTES`, `LOG_FILES`, `LOG_FORMAT`, in both tables.
pub(crate) const LOG_ROWS: [SettingDoc; 3] = [
    (
        "LOG_MAX_BYTES",
        "10000000",
        "size in bytes a log file is rotated at (file.log -> file.log.1 ...); 0: never",
    ),
    (
        "LOG_FILES",
        "5",
        "rotated log files kept (file.log.1 ... file.log.N)",
    ),
    (
        "LOG_FORMAT",
        "text",
        "log lines as text or json (one object a line)",
    ),
];

impl EnvReader<'_> {
    /// The HTTP limits of either process.
    pub fn http_limits(&mut self) -> HttpLimits {
        HttpLimits {
            max_connections: self.count("MAX_CONNECTIONS"),
            body_timeout: self.seconds("REQUEST_BODY_TIMEOUT", false),
        }
    }

    /// The log settings of either process; a `LOG_FORMAT` other than
    /// text or json is a problem naming the accepted values.
    pub fn log_options(&mut self) -> crate::util::logging::LogOptions {
        use crate::util::logging::{LogFormat, LogOptions};
        let max_bytes = self.whole("LOG_MAX_BYTES");
        let files = u32::try_from(self.whole("LOG_FILES")).unwrap_or(u32::MAX);
        let raw = self.get("LOG_FORMAT");
        let format = LogFormat::parse(&raw).unwrap_or_else(|| {
            let name = self.name("LOG_FORMAT");
            self.problem(format!(
                "{name}: unknown log format {raw:?}; accepted values: {}",
                LogFormat::ACCEPTED
            ));
            LogFormat::Text
        });
        LogOptions {
            max_bytes,
            files,
            format,
        }
    }
}

/// Reads typed values out of an env map, falling back to the documented
/// defaults, and collects a problem for each value it cannot use instead
/// of stopping at the first.
pub struct EnvReader<'a> {
    env: &'a BTreeMap<String, String>,
    defaults: &'static [SettingDoc],
    /// Variable → the flag that sets it, so messages name both.
    flags: &'static [(&'static str, &'static str)],
    problems: Vec<String>,
}

impl<'a> EnvReader<'a> {
    pub fn new(
        env: &'a BTreeMap<String, String>,
        defaults: &'static [SettingDoc],
        flags: &'static [(&'static str, &'static str)],
    ) -> Self {
        Self {
            env,
            defaults,
            flags,
            problems: Vec::new(),
        }
    }

    /// The raw value: the map's, else the documented default, else "".
    pub fn get(&self, key: &str) -> String {
        self.env.get(key).cloned().unwrap_or_else(|| {
            self.defaults
                .iter()
                .find(|(k, _, _)| *k == key)
                .map_or(String::new(), |(_, d, _)| d.to_string())
        })
    }

    /// The value if set and not blank (a default of "" means "not set").
    pub fn optional(&self, key: &str) -> Option<String> {
        let v = self.get(key);
        (!v.trim().is_empty()).then(|| v.trim().to_string())
    }

    /// How a message names a variable: `KEY`, or `KEY (--flag)`.
    pub fn name(&self, key: &str) -> String {
        match self.flags.iter().find(|(k, _)| *k == key) {
            Some((_, flag)) => format!("{key} ({flag})"),
            None => key.to_string(),
        }
    }

    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    /// A duration in seconds, > 0 (or ≥ 0 with `allow_zero`).
    pub fn seconds(&mut self, key: &str, allow_zero: bool) -> Duration {
        let raw = self.get(key);
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v < 1e9 => {
                Duration::from_secs_f64(v)
            }
            _ => {
                let name = self.name(key);
                self.problem(format!(
                    "{name}: expected a number of seconds {} 0, found {raw:?}; fix it in .env or the environment",
                    if allow_zero { "≥" } else { ">" }
                ));
                Duration::from_secs(1)
            }
        }
    }

    /// A file or folder path; an empty one is a problem (it would mean the
    /// current folder, where files would land unnoticed).
    pub fn path(&mut self, key: &str) -> std::path::PathBuf {
        let raw = self.get(key);
        if raw.trim().is_empty() {
            let name = self.name(key);
            let default = self
                .defaults
                .iter()
                .find(|(k, _, _)| *k == key)
                .map_or("", |(_, d, _)| d);
            self.problem(format!(
                "{name}: expected a path, found an empty value; set one (the default is {default:?}) \
                 or remove the line to use the default"
            ));
        }
        std::path::PathBuf::from(raw)
    }

    /// A whole number ≥ 0.
    pub fn whole(&mut self, key: &str) -> u64 {
        let raw = self.get(key);
        raw.trim().parse::<u64>().unwrap_or_else(|_| {
            let name = self.name(key);
            self.problem(format!(
                "{name}: expected a whole number ≥ 0, found {raw:?}; fix it in .env or the environment"
            ));
            0
        })
    }

    /// A whole number ≥ 1.
    pub fn count(&mut self, key: &str) -> usize {
        let raw = self.get(key);
        match raw.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                let name = self.name(key);
                self.problem(format!("{name}: expected a whole number ≥ 1, found {raw:?}"));
                1
            }
        }
    }

    /// A TCP port, 0 (any free port) to 65535.
    pub fn port(&mut self, key: &str) -> u16 {
        let raw = self.get(key);
        raw.trim().parse::<u16>().unwrap_or_else(|_| {
            let name = self.name(key);
            self.problem(format!("{name}: expected a port from 0 to 65535, found {raw:?}"));
            0
        })
    }

    /// A number > 0; `fallback` when it is not one (the problem is noted).
    pub fn positive(&mut self, key: &str, fallback: f64) -> f64 {
        let raw = self.get(key);
        match raw.trim().parse::<f64>() {
            Ok(v) if v > 0.0 => v,
            _ => {
                let name = self.name(key);
                self.problem(format!("{name}: expected a number > 0, found {raw:?}"));
                fallback
            }
        }
    }

    /// true/false (also 1/0, yes/no, on/off).
    pub fn boolean(&mut self, key: &str) -> bool {
        let raw = self.get(key);
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                let name = self.name(key);
                self.problem(format!("{name}: expected true or false, found {raw:?}"));
                true
            }
        }
    }

    /// Every problem noted so far, or nothing.
    pub fn finish(&mut self) -> Result<(), Vec<String>> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(std::mem::take(&mut self.problems))
        }
    }
}

/// The token and whether `host` may be bound with it (the bind rule of
/// [`crate::util::token`], `ORQUESTA_INSECURE` read here); a problem for
/// each that is wrong. `setting` names the host in messages.
pub(crate) fn token_and_bind(
    r: &mut EnvReader<'_>,
    env: &BTreeMap<String, String>,
    host: &str,
    setting: &str,
) -> (Option<Token>, BindVerdict) {
    let insecure = r.boolean("ORQUESTA_INSECURE");
    match token_from_env(env) {
        Ok(token) => match check_bind(host, token.as_ref(), insecure, setting) {
            Ok(bind) => (token, bind),
            Err(problem) => {
                r.problem(problem);
                (token, BindVerdict::Safe)
            }
        },
        Err(problem) => {
            r.problem(problem.to_string());
            (None, BindVerdict::Safe)
        }
    }
}

/// The TLS settings, or none with a problem for each unusable file.
pub(crate) fn read_tls(r: &mut EnvReader<'_>, env: &BTreeMap<String, String>) -> Tls {
    tls_from_env(env).unwrap_or_else(|problems| {
        for p in problems {
            r.problem(p);
        }
        Tls::default()
    })
}

// Ours, not the `dotenvy` crate (tried for issue 18): dotenvy 0.15.7's line
// reader takes `#` for a comment only after exactly one space; after several
// (the seed's style: `WORKER_TIMEOUT=300    # the seed's value`) an
// apostrophe in the comment opens a quote that swallows the rest of the
// file (the config-check integration test caught it). Its errors carry no
// line number either; the wrapper mending both was longer than this parser.
/// Parses dotenv text: `KEY=VALUE` lines, optional `export `, `#` comments
/// (also after an unquoted value, as in the seed's `.env`), single or double
/// quotes around a value. Returns the pairs and a message for each line that
/// is not understood.
pub fn parse_dotenv(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut vars = BTreeMap::new();
    let mut problems = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            problems.push(format!("line {}: expected KEY=VALUE, found {raw:?}", number + 1));
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            problems.push(format!("line {}: {key:?} is not a variable name", number + 1));
            continue;
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => match value[1..].find(q) {
                Some(end) => value[1..1 + end].to_string(),
                None => {
                    problems.push(format!("line {}: unclosed quote in {key}", number + 1));
                    continue;
                }
            },
            _ => match value.find(" #").or_else(|| value.find("\t#")) {
                Some(hash) => value[..hash].trim_end().to_string(),
                None => value.to_string(),
            },
        };
        vars.insert(key.to_string(), value);
    }
    (vars, problems)
}

/// Loads `.env` from `path` into the process environment, without
/// overriding variables that are already set. Call before any thread starts.
/// Returns the problems found in the file (a missing file is not one).
pub fn load_dotenv(path: &Path) -> Vec<String> {
    let text = match crate::util::fs::read_setting_file(path, 1 << 20) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("{} is not read: {e}", path.display())],
    };
    let (vars, problems) = parse_dotenv(&text);
    for (key, value) in vars {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(key, value);
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect()
}

/// The process environment as a map.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An env map from pairs, for the settings tests.
    pub(crate) use crate::util::env_map as env;

    #[test]
    fn reads_the_seeds_env_file() {
        let text = "# ETAPA 6\nTASK_DISTRIBUTION_INTERVAL=2.0    # Intervalo\nMAX_TASK_RETRIES=3\n\
                    RESULTS_STORAGE_PATH=results/     # Directorio\nexport WORKER_ID=\"worker 1\"\n\
                    QUOTED='a # b'\n";
        let (vars, problems) = parse_dotenv(text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(vars["TASK_DISTRIBUTION_INTERVAL"], "2.0");
        assert_eq!(vars["MAX_TASK_RETRIES"], "3");
        assert_eq!(vars["RESULTS_STORAGE_PATH"], "results/");
        assert_eq!(vars["WORKER_ID"], "worker 1");
        assert_eq!(vars["QUOTED"], "a # b");
    }

    #[test]
    fn the_env_example_reads_without_problems() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
        let (vars, problems) = parse_dotenv(&text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(vars["TASK_DISTRIBUTION_INTERVAL"], "2.0");
        assert_eq!(vars["TASK_TIMEOUT"], "none");
        assert!(!vars.contains_key("WORKER_ID"), "commented out: {vars:?}");
    }

    #[test]
    fn reports_lines_it_cannot_read() {
        let (vars, problems) = parse_dotenv("GOOD=1\nno equals sign\nBAD KEY=2\nX=\"open\n");
        assert_eq!(vars.len(), 1);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 2"));
    }

    #[test]
    fn a_comment_after_spaces_may_hold_a_quote() {
        // the seed's style, where dotenvy takes the apostrophe for a quote
        let (vars, problems) = parse_dotenv("WORKER_TIMEOUT=300    # the seed's value\nMAX_TASK_RETRIES=3\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(vars["WORKER_TIMEOUT"], "300");
        assert_eq!(vars["MAX_TASK_RETRIES"], "3");
    }
}
