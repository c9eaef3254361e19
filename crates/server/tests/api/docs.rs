//! The repository's own docs carry the API contract: `docs/api.md` lists every operation of
//! `/openapi.json` and every error code the server can send, and nothing tracked in the
//! repository points readers to a file outside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use inference_engine_testkit::{TestApp, json_body};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn api_reference() -> String {
    let path = repository().join("docs/api.md");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[tokio::test]
async fn the_api_reference_lists_every_operation_of_the_openapi_document() {
    let app = TestApp::spawn().await;
    let openapi = json_body(app.get("/openapi.json", None).await).await;
    let reference = api_reference();
    let mut missing = Vec::new();
    let mut operations = 0;
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let written = format!("`{} {path}`", method.to_uppercase());
            if !reference.contains(&written) {
                missing.push(written);
            }
        }
    }
    assert!(
        operations >= 27,
        "only {operations} operations in /openapi.json"
    );
    assert!(
        missing.is_empty(),
        "docs/api.md does not mention these operations of /openapi.json: {missing:?}"
    );
}

/// The error codes written in the sources of the crates whose errors reach clients (`core`'s
/// `Classified::code` implementations, the server's `ApiError`s and its fallback table): the
/// literal after an `ErrorKind::X,`, every literal inside an `fn code(&self)`, and the first
/// element of a `=> ("code", ...)` arm.
fn error_codes_in_the_sources() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for crate_dir in ["crates/core/src", "crates/server/src"] {
        for file in rust_files(&repository().join(crate_dir)) {
            let text = std::fs::read_to_string(&file).expect("read source");
            collect_codes(&text, &mut codes);
        }
    }
    codes
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

/// The snake_case string literal `text` starts with (after blanks), if any.
fn leading_code(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let literal = &rest[..end];
    let snake = !literal.is_empty()
        && literal
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'_');
    snake.then_some(literal)
}

fn collect_codes(text: &str, codes: &mut BTreeSet<String>) {
    // `ApiError::new(ErrorKind::NotReady, "not_ready", ..)`.
    for (at, _) in text.match_indices("ErrorKind::") {
        let rest = &text[at + "ErrorKind::".len()..];
        let ident = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if let Some(after_comma) = rest[ident..].trim_start().strip_prefix(',')
            && let Some(code) = leading_code(after_comma)
        {
            codes.insert(code.to_owned());
        }
    }
    // `fn code(&self) -> &'static str { match self { .. => "code", .. } }`.
    for (at, _) in text.match_indices("fn code(&self) -> &'static str {") {
        let body_start = at + text[at..].find('{').expect("the body's brace");
        let mut depth = 0;
        let mut body_end = text.len();
        for (offset, c) in text[body_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        body_end = body_start + offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        let body = &text[body_start..body_end];
        for (quote, _) in body.match_indices('"') {
            if let Some(code) = leading_code(&body[quote..]) {
                codes.insert(code.to_owned());
            }
        }
    }
    // `StatusCode::NOT_FOUND => ("not_found", "no such route")`.
    for (at, _) in text.match_indices("=> (") {
        if let Some(code) = leading_code(&text[at + "=> (".len()..]) {
            codes.insert(code.to_owned());
        }
    }
}

/// The codes of the error table of `docs/api.md`: the first cell of each row after its
/// `## Error codes` heading, up to the table's end.
fn documented_codes(reference: &str) -> BTreeSet<String> {
    let section = reference
        .split("\n## Error codes")
        .nth(1)
        .expect("docs/api.md has an `## Error codes` section");
    section
        .lines()
        .skip_while(|line| !line.starts_with("| code |"))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cell = line.split('|').nth(1)?.trim();
            Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_owned())
        })
        .collect()
}

#[test]
fn the_api_reference_documents_every_error_code() {
    let in_sources = error_codes_in_the_sources();
    // The scan itself must not go blind (a renamed trait method, a moved table).
    for known in [
        "unauthenticated",
        "model_not_found",
        "job_not_cancellable",
        "malformed_json",
        "method_not_allowed",
        "rate_limited",
        "inference_timeout",
    ] {
        assert!(
            in_sources.contains(known),
            "the scan of the sources did not find {known:?}: {in_sources:?}"
        );
    }
    let documented = documented_codes(&api_reference());
    let undocumented: Vec<_> = in_sources.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "error codes missing from the table in docs/api.md: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&in_sources).collect();
    assert!(
        stale.is_empty(),
        "docs/api.md documents codes the server never sends: {stale:?}"
    );
}

/// Readers of the repository get its own docs: no file mentions the design folder the project
/// was specified in, which is not part of the repository.
#[test]
fn nothing_in_the_repository_refers_to_files_outside_it() {
    // Written in pieces so that this file does not match itself.
    let spec = ["SP", "EC"].concat();
    let design = ["shared", "/design"].concat();
    let output = Command::new("git")
        .current_dir(repository())
        .args(["grep", "-n", "-I", "-F", "-w", "-e"])
        .arg(&spec)
        .arg("-e")
        .arg(format!("{spec}.md"))
        .arg("-e")
        .arg(&design)
        .arg("-e")
        .arg(["..", "/shared"].concat())
        .output()
        .expect("git runs (this test reads the repository's tracked files with `git grep`)");
    // `git grep` exits 1 when nothing matches, 0 with matches, and >1 on an error.
    let stdout = String::from_utf8_lossy(&output.stdout);
    match output.status.code() {
        Some(1) => {}
        Some(0) => panic!("tracked files refer to a file outside the repository:\n{stdout}"),
        _ => panic!(
            "git grep failed (is this a git checkout?): {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
