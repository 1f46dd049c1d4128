//! What an attachment really is: its name's extension, the type its first
//! bytes say (the `infer` crate's magic-byte table), and — for zip, tar and
//! gzip — the files inside, to a named depth and within a named number of
//! decompressed bytes, so an archive bomb costs a bounded amount of work.

use std::io::{Cursor, Read};

/// How deep and how much the archive reader may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Archives inside archives: 0 looks at the attachment only.
    pub depth_max: usize,
    /// Decompressed bytes read from all archives of one attachment.
    pub bytes_max: usize,
    /// Members listed from all archives of one attachment.
    pub entries_max: usize,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self { depth_max: 2, bytes_max: 50 * 1024 * 1024, entries_max: 1000 }
    }
}

/// One file: the attachment itself, or a member of an archive in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// `invoice.zip` for the attachment, `invoice.zip/setup.exe` inside it.
    pub path: String,
    /// The extension of the file's own name, lower case, without the dot.
    pub extension: String,
    /// The extension its content says (`exe`, `pdf`, `zip`), when known.
    pub detected: Option<&'static str>,
    /// The content is a program (PE, ELF, Mach-O, DEX, shell script…).
    pub executable: bool,
    /// The content is a `#!` script (a program, but text).
    pub script: bool,
    /// An archive member stored encrypted (password protected).
    pub encrypted: bool,
    pub size: usize,
    /// The archive could not be read entirely (limit or damage).
    pub truncated: bool,
}

/// The extension of a file name, lower case, without the dot.
pub fn extension_of(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.trim().to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// The file and, for archives, everything inside it within `limits`.
pub fn inspect(name: &str, data: &[u8], limits: &ArchiveLimits) -> Vec<FileEntry> {
    let mut out = Vec::new();
    let mut budget = Budget { bytes: limits.bytes_max, entries: limits.entries_max };
    visit(name.to_string(), data, 0, false, limits, &mut budget, &mut out);
    out
}

struct Budget {
    bytes: usize,
    entries: usize,
}

fn visit(
    path: String,
    data: &[u8],
    depth: usize,
    encrypted: bool,
    limits: &ArchiveLimits,
    budget: &mut Budget,
    out: &mut Vec<FileEntry>,
) {
    let kind = infer::get(data);
    let detected = kind.map(|k| k.extension());
    let executable = is_executable(data, kind.as_ref());
    let index = out.len();
    out.push(FileEntry {
        extension: extension_of(&path),
        path: path.clone(),
        detected,
        executable,
        script: data.starts_with(b"#!"),
        encrypted,
        size: data.len(),
        truncated: false,
    });
    if depth >= limits.depth_max || encrypted {
        return;
    }
    let complete = match detected {
        Some("zip") => zip_members(&path, data, depth, limits, budget, out),
        Some("tar") => tar_members(&path, data, depth, limits, budget, out),
        Some("gz") => {
            let inner_name = path.strip_suffix(".gz").or_else(|| path.strip_suffix(".tgz")).unwrap_or(&path);
            let inner_name = if path.ends_with(".tgz") { format!("{inner_name}.tar") } else { inner_name.to_string() };
            match read_bounded(flate2::read::GzDecoder::new(data), budget) {
                Some(inner) => {
                    visit(
                        format!("{path}/{}", last_segment(&inner_name)),
                        &inner,
                        depth + 1,
                        false,
                        limits,
                        budget,
                        out,
                    );
                    true
                }
                None => false,
            }
        }
        _ => true,
    };
    if !complete {
        if let Some(e) = out.get_mut(index) {
            e.truncated = true;
        }
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Reads `reader` to its end within the byte budget; `None` when it would not fit or is damaged.
fn read_bounded(reader: impl Read, budget: &mut Budget) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let allowed = budget.bytes as u64 + 1;
    reader.take(allowed).read_to_end(&mut out).ok()?;
    if out.len() > budget.bytes {
        budget.bytes = 0;
        return None;
    }
    budget.bytes -= out.len();
    Some(out)
}

fn zip_members(
    path: &str,
    data: &[u8],
    depth: usize,
    limits: &ArchiveLimits,
    budget: &mut Budget,
    out: &mut Vec<FileEntry>,
) -> bool {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(data)) else { return false };
    let mut complete = true;
    for i in 0..archive.len() {
        if budget.entries == 0 {
            return false;
        }
        budget.entries -= 1;
        let (name, encrypted, is_dir) = match archive.by_index_raw(i) {
            Ok(f) => (f.name().map(|n| n.to_string()).unwrap_or_default(), f.encrypted(), f.is_dir()),
            Err(_) => return false,
        };
        if is_dir {
            continue;
        }
        let member = format!("{path}/{name}");
        if encrypted {
            visit(member, &[], depth + 1, true, limits, budget, out);
            continue;
        }
        let content = match archive.by_index(i) {
            Ok(f) => read_bounded(f, budget),
            Err(_) => None,
        };
        match content {
            Some(bytes) => visit(member, &bytes, depth + 1, false, limits, budget, out),
            None => {
                complete = false;
                visit(member, &[], depth + 1, false, limits, budget, out);
            }
        }
    }
    complete
}

fn tar_members(
    path: &str,
    data: &[u8],
    depth: usize,
    limits: &ArchiveLimits,
    budget: &mut Budget,
    out: &mut Vec<FileEntry>,
) -> bool {
    let mut archive = tar::Archive::new(data);
    let Ok(entries) = archive.entries() else { return false };
    for entry in entries {
        if budget.entries == 0 {
            return false;
        }
        budget.entries -= 1;
        let Ok(entry) = entry else { return false };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(bytes) = read_bounded(entry, budget) else { return false };
        visit(format!("{path}/{name}"), &bytes, depth + 1, false, limits, budget, out);
    }
    true
}

/// Programs by their first bytes, and scripts by their `#!` line.
fn is_executable(data: &[u8], kind: Option<&infer::Type>) -> bool {
    if data.starts_with(b"#!") {
        return true;
    }
    matches!(
        kind.map(|k| k.extension()),
        Some("exe" | "dll" | "elf" | "dex" | "dey" | "class" | "msi" | "deb" | "rpm" | "apk" | "wasm")
    ) || kind.map(|k| k.mime_type() == "application/x-mach-binary").unwrap_or(false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            let options = zip::write::SimpleFileOptions::default();
            assert!(w.start_file(*name, options).is_ok());
            assert!(w.write_all(data).is_ok());
        }
        w.finish().map(|c| c.into_inner()).unwrap_or_default()
    }

    const PE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00";

    #[test]
    fn extension_table() {
        for (name, ext) in
            [("a.PDF", "pdf"), ("a.pdf.exe", "exe"), ("noext", ""), (".bashrc", ""), ("dir/x.tar.gz", "gz")]
        {
            assert_eq!(extension_of(name), ext, "{name}");
        }
    }

    #[test]
    fn pe_under_a_pdf_name_is_an_executable() {
        let e = inspect("invoice.pdf", PE, &ArchiveLimits::default());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].extension, "pdf");
        assert_eq!(e[0].detected, Some("exe"));
        assert!(e[0].executable);
    }

    #[test]
    fn looks_inside_zip_to_the_depth_limit() {
        let inner = zip_of(&[("setup.exe", PE)]);
        let outer = zip_of(&[("readme.txt", b"hello"), ("inner.zip", &inner)]);
        let all = inspect("docs.zip", &outer, &ArchiveLimits::default());
        let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["docs.zip", "docs.zip/readme.txt", "docs.zip/inner.zip", "docs.zip/inner.zip/setup.exe"]);
        assert!(all[3].executable);
        let shallow = inspect("docs.zip", &outer, &ArchiveLimits { depth_max: 1, ..Default::default() });
        assert_eq!(shallow.len(), 3);
    }

    #[test]
    fn gzip_and_tar_are_opened() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(PE.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        assert!(tar.append_data(&mut header, "bin/run.exe", PE).is_ok());
        let tar = tar.into_inner().unwrap_or_default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        assert!(gz.write_all(&tar).is_ok());
        let gz = gz.finish().unwrap_or_default();
        let all = inspect("x.tgz", &gz, &ArchiveLimits { depth_max: 3, ..Default::default() });
        assert!(all.iter().any(|e| e.path.ends_with("bin/run.exe") && e.executable), "{all:?}");
    }

    #[test]
    fn bomb_stops_at_the_byte_budget() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let z = zip_of(&[("zeros.bin", &zeros)]);
        let all = inspect("bomb.zip", &z, &ArchiveLimits { bytes_max: 1024 * 1024, ..Default::default() });
        assert!(all[0].truncated);
    }
}
