//! Test messages: plain, HTML, with attachments (base64), zip archives.

use base64::Engine;
use std::io::Write;

/// A plain text message.
pub fn plain(subject: &str, body: &[u8]) -> Vec<u8> {
    let mut m =
        format!("From: <sender@example.org>\r\nTo: <alice@example.com>\r\nSubject: {subject}\r\n\r\n").into_bytes();
    m.extend_from_slice(body);
    m.extend_from_slice(b"\r\n");
    m
}

/// A message with an HTML body.
pub fn html(subject: &str, html: &str) -> Vec<u8> {
    format!(
        "From: <sender@example.org>\r\nTo: <alice@example.com>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    )
    .into_bytes()
}

/// A multipart/mixed message: a text part, then each file as a base64 attachment.
pub fn with_attachments(subject: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = format!(
        "From: <sender@example.org>\r\nTo: <alice@example.com>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    )
    .into_bytes();
    for (name, data) in files {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        m.extend_from_slice(
            format!(
                "--b1\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            )
            .as_bytes(),
        );
        for line in b64.as_bytes().chunks(76) {
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"--b1--\r\n");
    m
}

/// A zip archive of these files (deflated).
pub fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            w.start_file(*name, options).expect("zip entry");
            w.write_all(data).expect("zip write");
        }
        w.finish().expect("zip finish");
    }
    out.into_inner()
}

/// A zip whose members are flagged password-protected (the flag is what
/// readers go by; the bytes need not really be encrypted for the check).
pub fn encrypted_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip(files);
    let mut i = 0;
    while i + 10 <= z.len() {
        if z[i..i + 4] == *b"PK\x03\x04" {
            z[i + 6] |= 1;
        } else if z[i..i + 4] == *b"PK\x01\x02" {
            z[i + 8] |= 1;
        }
        i += 1;
    }
    z
}

/// The first bytes of a Windows program (PE): enough for type detection.
pub fn pe_program() -> Vec<u8> {
    let mut p = vec![0u8; 512];
    p[0] = b'M';
    p[1] = b'Z';
    p[0x3c] = 0x80;
    p[0x80..0x84].copy_from_slice(b"PE\0\0");
    p
}
