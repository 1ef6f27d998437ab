//! The corpus convention shared by the framing, statsd and Influx tests: each input file
//! `NAME.<extension>` in `tests/data/<folder>` has its expected rendering in `NAME.json`.

use std::path::Path;

use serde_json::Value;

/// Renders every input of `folder` and compares it with its recorded JSON; fails when the
/// folder holds no input at all, so an emptied corpus cannot pass.
pub fn check_corpus(folder: &str, extension: &str, render: impl Fn(&[u8], &Value) -> Value) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(folder);
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).expect("corpus folder") {
        let path = entry.expect("corpus entry").path();
        if path.extension().is_none_or(|found| found != extension) {
            continue;
        }
        let input = std::fs::read(&path).expect("input file");
        let expected: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).expect("expectation file"))
                .expect("expectation JSON");
        assert_eq!(render(&input, &expected), expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked > 0, "no corpus in {}", folder.display());
}
