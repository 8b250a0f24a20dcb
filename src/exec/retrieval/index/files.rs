//! The files an index build touches: which documents under DOCS_DIR it reads, and which
//! directory it may write.
//!
//! Reading: regular files only, each once. A pipe, socket or device named like a document is
//! skipped (reading one blocks or never ends); a link is followed only to a regular file inside
//! DOCS_DIR, and a file reached by a link and by its own path is indexed once, under its own
//! path (a file with two hard links, once under the first). Links to directories are not followed (inside the folder they are found anyway; a
//! link to a parent is a loop), and links out of the folder are skipped. A file is read with a
//! cap, whatever its size said when it was listed.
//!
//! Writing: the index directory holds a marker listing the files the build wrote. A later
//! build replaces an index only when the directory holds nothing else; a directory holding
//! anything the command did not write is refused, and nothing in it is deleted.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{IndexError, io};

/// The marker an index directory holds: the files the build wrote.
pub const MARKER: &str = "ballast-index.json";
/// Lock files tantivy makes beside an index when it is opened.
const TANTIVY_LOCKS: &[&str] = &[".tantivy-meta.lock", ".tantivy-writer.lock"];

/// The documents found under a folder, and what was left out with why.
#[derive(Debug, Default)]
pub struct Sources {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<(String, String)>,
}

fn is_document(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "md" | "markdown" | "txt"))
}

/// The Markdown and text files under `dir`, sorted (a build is reproducible).
pub fn source_files(dir: &Path) -> Result<Sources, IndexError> {
    let root = std::fs::canonicalize(dir).map_err(|e| io(dir, e))?;
    let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();
    // Each file (device and inode) and the path it is indexed under.
    let mut files: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut links: Vec<((u64, u64), PathBuf)> = Vec::new();
    let mut skipped = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let entry = entry.map_err(|e| io(&d, e))?;
            let path = entry.path();
            // The entry itself, not what a link names.
            let kind = entry.file_type().map_err(|e| io(&path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                if is_document(&path) {
                    match entry.metadata() {
                        Ok(m) => {
                            // Hard links: the first path in order, whatever the walk's order.
                            let kept = files.entry((m.dev(), m.ino())).or_insert(path.clone());
                            if path < *kept {
                                *kept = path;
                            }
                        }
                        Err(e) => skipped.push((rel(&path), e.to_string())),
                    }
                }
            } else if kind.is_symlink() {
                match follow(&root, &path) {
                    Ok(real) if is_document(&path) => links.push((real, path)),
                    Ok(_) => {}
                    Err(why) => {
                        if is_document(&path) || why == LINK_TO_DIR {
                            skipped.push((rel(&path), why.to_string()));
                        }
                    }
                }
            } else if is_document(&path) {
                skipped.push((
                    rel(&path),
                    "not a regular file (a pipe, socket or device)".to_string(),
                ));
            }
        }
    }
    // Files under their own paths first; then a link, in order, to a file not found so.
    links.sort_by(|a, b| a.1.cmp(&b.1));
    for (real, link) in links {
        match files.get(&real) {
            Some(own) => skipped.push((
                rel(&link),
                format!("the same file as {}, indexed once", rel(own)),
            )),
            None => {
                files.insert(real, link);
            }
        }
    }
    let mut files: Vec<PathBuf> = files.into_values().collect();
    files.sort();
    skipped.sort();
    Ok(Sources { files, skipped })
}

const LINK_TO_DIR: &str = "a link to a directory: not followed";

/// The file a link leads to (device and inode), when it is a regular file inside `root`; else
/// why not.
fn follow(root: &Path, link: &Path) -> Result<(u64, u64), &'static str> {
    let real = std::fs::canonicalize(link).map_err(|_| "a link to nothing (dangling or a loop)")?;
    let meta = std::fs::metadata(&real).map_err(|_| "a link to nothing (dangling or a loop)")?;
    if meta.is_dir() {
        return Err(LINK_TO_DIR);
    }
    if !real.starts_with(root) {
        return Err("a link out of the documents folder");
    }
    if !meta.is_file() {
        return Err("a link to something that is not a regular file");
    }
    Ok((meta.dev(), meta.ino()))
}

/// A document's text: a regular file (checked again on the open file), at most `max` bytes.
pub fn read_document(path: &Path, max: u64) -> Result<String, String> {
    let listed = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !listed.is_file() {
        return Err("not a regular file".into());
    }
    if listed.len() > max {
        return Err(format!("over {max} bytes"));
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let opened = file.metadata().map_err(|e| e.to_string())?;
    if !opened.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file that grew since it was listed.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("over {max} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    written_by: String,
    files: Vec<String>,
}

/// Makes `out` ready for a build: created if missing; an empty directory as it is; an index an
/// earlier build wrote (its marker, and nothing but the files the marker lists) emptied of
/// those files. Anything else is refused, and nothing is deleted. True when it was created.
pub fn prepare_out(out: &Path) -> Result<bool, IndexError> {
    let meta = match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
            return Ok(true);
        }
        Err(e) => return Err(io(out, e)),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return Err(io(out, "is not a directory"));
    }
    let names = entries(out)?;
    if names.is_empty() {
        return Ok(false);
    }
    let refuse = |what: String| {
        io(
            out,
            format!(
                "holds {what}, which `ballast index build` did not write; nothing was deleted: \
                 give a new or empty directory (or remove what is not the index's)"
            ),
        )
    };
    if !names.iter().any(|n| n == MARKER) {
        let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        return Err(refuse(format!("{} (no {MARKER})", shown.join(", "))));
    }
    let marker: Marker = std::fs::read(out.join(MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| io(out, format!("{MARKER} is not an index build's marker")))?;
    let plain = |n: &str| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\']);
    let ours = |n: &str| {
        n == MARKER
            || TANTIVY_LOCKS.contains(&n)
            || (plain(n) && marker.files.iter().any(|f| f == n))
    };
    if let Some(foreign) = names.iter().find(|n| !ours(n)) {
        return Err(refuse(foreign.clone()));
    }
    for name in &names {
        let path = out.join(name);
        // Only plain files are the index's: a directory or a link of that name is refused.
        let m = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if !m.is_file() {
            return Err(refuse(name.clone()));
        }
    }
    for name in &names {
        let path = out.join(name);
        std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
    }
    Ok(false)
}

/// Records what a finished build wrote into `out`.
pub fn mark_out(out: &Path) -> Result<(), IndexError> {
    let files: Vec<String> = entries(out)?.into_iter().filter(|n| n != MARKER).collect();
    let marker = Marker {
        written_by: "ballast index build".into(),
        files,
    };
    let text = serde_json::to_vec_pretty(&marker).map_err(|e| io(out, e))?;
    std::fs::write(out.join(MARKER), text).map_err(|e| io(out, e))
}

/// After a failed build: removes what it wrote (`out` was empty when it began), and `out` too
/// when the build created it.
pub fn clean_out(out: &Path, created: bool) {
    if let Ok(names) = entries(out) {
        for name in names {
            let path = out.join(&name);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if created {
        let _ = std::fs::remove_dir(out);
    }
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> Result<Vec<String>, IndexError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_marker_lists_is_ever_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("index");
        assert!(prepare_out(&out).expect("made"), "created");
        std::fs::write(out.join("meta.json"), "{}").expect("w");
        std::fs::write(out.join("seg.idx"), "x").expect("w");
        mark_out(&out).expect("marked");
        std::fs::write(out.join(".tantivy-meta.lock"), "").expect("w");
        std::fs::write(out.join("notes.txt"), "mine").expect("w");
        let err = prepare_out(&out).expect_err("a file the build did not write");
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert!(out.join("meta.json").exists() && out.join("notes.txt").exists());
        std::fs::remove_file(out.join("notes.txt")).expect("rm");
        assert!(!prepare_out(&out).expect("replaced"), "not created");
        assert_eq!(entries(&out).expect("ls"), Vec::<String>::new());
        // A meta.json alone does not make an index.
        std::fs::write(out.join("meta.json"), "{}").expect("w");
        assert!(prepare_out(&out).is_err());
        assert!(out.join("meta.json").exists());
    }

    #[test]
    fn a_document_is_read_with_a_cap() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.md");
        std::fs::write(&path, "0123456789").expect("w");
        assert_eq!(read_document(&path, 10).expect("at the cap"), "0123456789");
        assert!(read_document(&path, 9).is_err());
        assert!(read_document(dir.path(), 10).is_err(), "a directory");
        std::fs::write(&path, [0xff, 0xfe]).expect("w");
        assert!(read_document(&path, 10).is_err(), "not UTF-8");
    }
}
