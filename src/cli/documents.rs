//! Manifests as `kubectl apply -f` takes them: files, directories (their `.yaml`, `.yml` and
//! `.json` files, recursively with `recursive`) and `-` for standard input, each file holding
//! one or more YAML documents.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The largest manifest file read: a BucketCors is at most a few hundred KiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One YAML document of one file.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file, or `-` for standard input.
    pub file: String,
    /// The line of the file where the document starts (1-based).
    pub line: usize,
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn api_group(&self) -> &str {
        self.value["apiVersion"]
            .as_str()
            .and_then(|v| v.split_once('/'))
            .map_or("", |(group, _)| group)
    }

    /// `namespace/name`, or `name` when the document names no namespace.
    pub fn object_name(&self) -> String {
        let meta = &self.value["metadata"];
        let name = meta["name"].as_str().unwrap_or("<no name>");
        match meta["namespace"].as_str() {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_owned(),
        }
    }
}

/// A file that cannot be read or parsed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Every document of every path, in order. Directories are read in name order.
pub fn load(paths: &[String], recursive: bool) -> Result<Vec<Document>, Vec<LoadError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = if path == "-" {
            vec![PathBuf::from("-")]
        } else {
            match files_under(Path::new(path), recursive, true) {
                Ok(files) => files,
                Err(message) => {
                    errors.push(LoadError {
                        file: path.clone(),
                        line: 0,
                        message,
                    });
                    continue;
                }
            }
        };
        for file in files {
            let name = file.display().to_string();
            match read(&file).and_then(|text| split(&name, &text)) {
                Ok(mut found) => documents.append(&mut found),
                Err(err) => errors.push(err),
            }
        }
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(errors)
    }
}

fn files_under(path: &Path, recursive: bool, top: bool) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    if !top && !recursive {
        return Ok(Vec::new());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot read the directory: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            files.extend(files_under(&entry, recursive, false)?);
        } else if entry
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(entry);
        }
    }
    Ok(files)
}

fn read(file: &Path) -> Result<String, LoadError> {
    let name = file.display().to_string();
    let fail = |message: String| LoadError {
        file: name.clone(),
        line: 0,
        message,
    };
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!(
            "is larger than {} MiB",
            MAX_FILE_BYTES / 1024 / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|e| fail(format!("is not UTF-8: {e}")))
}

/// The documents of one file's text: split on `---` lines, each parsed alone so that an
/// error names its own line. Empty documents are skipped.
pub fn split(file: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let mut documents = Vec::new();
    let mut start = 1;
    let mut chunk = String::new();
    let mut flush = |chunk: &mut String, start: usize| -> Result<(), LoadError> {
        let text = std::mem::take(chunk);
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(());
        }
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| {
            let message = e.to_string();
            LoadError {
                file: file.to_owned(),
                line: start + error_line(&message).unwrap_or(1) - 1,
                message: format!("not valid YAML: {}", first_line(&message)),
            }
        })?;
        if !value.is_null() {
            documents.push(Document {
                file: file.to_owned(),
                line: start,
                value,
            });
        }
        Ok(())
    };
    for (index, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line == "...";
        if marker {
            flush(&mut chunk, start)?;
            start = index + 2;
        } else {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    flush(&mut chunk, start)?;
    Ok(documents)
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

// serde-saphyr reports "... at line L column C".
fn error_line(message: &str) -> Option<usize> {
    let (_, rest) = message.split_once("line ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_with_their_lines_and_empty_ones_skipped() {
        let text = "# header\n---\na: 1\n---\n# only a comment\n---\nb:\n  c: 2\n...\n";
        let docs = split("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[0].value["a"].as_i64()), (3, Some(1)));
        assert_eq!(
            (docs[1].line, docs[1].value["b"]["c"].as_i64()),
            (7, Some(2))
        );
    }

    #[test]
    fn a_yaml_error_names_the_file_and_the_line_of_the_file() {
        let text = "a: 1\n---\nb: 2\nc: [1, 2\n";
        let err = split("f.yaml", text).unwrap_err();
        assert_eq!(err.file, "f.yaml");
        assert!(err.line >= 3, "{err}");
        assert!(err.message.starts_with("not valid YAML"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn splitting_never_panics(input in r#"(---\n|[a-z: \n\[\]{},#"-]){0,120}"#) {
            let _ = split("f.yaml", &input);
        }
    }
}
