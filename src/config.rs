//! Configuration sources shared by every subcommand: the `.env` file
//! (dotenv), then the environment, then command-line flags, each overriding
//! the one before.

use std::collections::BTreeMap;
use std::path::Path;

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
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reports_lines_it_cannot_read() {
        let (vars, problems) = parse_dotenv("GOOD=1\nno equals sign\nBAD KEY=2\nX=\"open\n");
        assert_eq!(vars.len(), 1);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 2"));
    }
}
