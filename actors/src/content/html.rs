//! The two HTML questions the dangerous-content scan asks: does the HTML
//! carry active elements (forms, scripts, frames, plugins), and does a link
//! show one URL while it goes to another host. A tag scanner, not a DOM: it
//! only has to find start tags and the text of anchors.

const ACTIVE: &[&str] = &["form", "script", "iframe", "object", "embed"];

/// The active elements found, each once, in the order of `ACTIVE`.
pub fn active_tags(html: &str) -> Vec<&'static str> {
    let lower = html.to_ascii_lowercase();
    ACTIVE.iter().copied().filter(|tag| start_tags(&lower, tag).next().is_some()).collect()
}

/// Positions just after `<tag` where a start tag of that name begins.
fn start_tags<'a>(lower: &'a str, tag: &'a str) -> impl Iterator<Item = usize> + 'a {
    let open = format!("<{tag}");
    lower
        .match_indices(open.as_str())
        .map(|(i, m)| i + m.len())
        .collect::<Vec<_>>()
        .into_iter()
        .filter(move |&end| matches!(lower.as_bytes().get(end), Some(b' ' | b'>' | b'/' | b'\t' | b'\r' | b'\n')))
}

/// Links whose visible text names a URL or host other than the target's:
/// (shown host, target host).
pub fn phishing_links(html: &str) -> Vec<(String, String)> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    for start in start_tags(&lower, "a") {
        let Some(tag_end) = lower[start..].find('>').map(|e| start + e) else { continue };
        let Some(href) = attribute(&html[start..tag_end], &lower[start..tag_end], "href") else { continue };
        let Some(close) = lower[tag_end..].find("</a").map(|e| tag_end + e) else { continue };
        let text = strip_tags(&html[tag_end + 1..close]);
        let (Some(shown), Some(target)) = (shown_host(text.trim()), url_host(&href)) else { continue };
        if bare(&shown) != bare(&target) {
            out.push((shown, target));
        }
    }
    out
}

/// The targets of `href` and `src` attributes, as written.
pub fn link_targets(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    for attr in ["href", "src"] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(attr).map(|i| from + i) {
            from = i + attr.len();
            let tag_start = lower[..i].rfind('<').unwrap_or(0);
            let tag_end = lower[i..].find('>').map_or(lower.len(), |e| i + e);
            if let Some(v) = attribute(&html[i..tag_end], &lower[i..tag_end], attr) {
                if tag_start < i && !v.is_empty() {
                    out.push(v);
                }
            }
        }
    }
    out
}

fn bare(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

fn attribute(tag: &str, lower: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = lower[from..].find(name).map(|i| from + i) {
        from = i + name.len();
        let before_ok = i == 0 || lower.as_bytes().get(i - 1).is_some_and(|b| b.is_ascii_whitespace());
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_at = tag.len() - rest.len() + 1;
        let value = tag[value_at..].trim_start();
        return Some(match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or_default().to_string(),
            _ => value.split(|c: char| c.is_whitespace()).next().unwrap_or_default().to_string(),
        });
    }
    None
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in s.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// The host a link's visible text claims: a URL, or a bare `www.` name.
fn shown_host(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return url_host(&lower);
    }
    if lower.starts_with("www.") && !lower.contains(' ') {
        return url_host(&format!("http://{lower}"));
    }
    None
}

/// The host of an http(s) URL, lower case; `None` for other schemes.
pub fn url_host(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default().trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_elements_table() {
        let cases: &[(&str, &[&str])] = &[
            ("<p>hi</p>", &[]),
            ("<FORM action=x>", &["form"]),
            ("<script>alert(1)</script>", &["script"]),
            ("<iframe src=x></iframe><embed src=y>", &["iframe", "embed"]),
            ("<object data=x>", &["object"]),
            ("<formula> <scripts>", &[]),
        ];
        for (html, want) in cases {
            assert_eq!(active_tags(html), *want, "{html}");
        }
    }

    #[test]
    fn phishing_table() {
        let cases: &[(&str, bool)] = &[
            (r#"<a href="https://evil.example/login">https://www.paypal.com/</a>"#, true),
            (r#"<a href='http://paypal.com.evil.example'>www.paypal.com</a>"#, true),
            (r#"<A HREF="https://www.bank.example/x">https://bank.example/y</A>"#, false),
            (r#"<a href="https://evil.example">Click here</a>"#, false),
            (r#"<a href="mailto:a@b.example">https://b.example</a>"#, false),
            (r#"<a class=x href=https://evil.example/><b>https://good.example</b></a>"#, true),
            (r#"<a href="https://user@evil.example">https://good.example</a>"#, true),
        ];
        for (html, phish) in cases {
            assert_eq!(!phishing_links(html).is_empty(), *phish, "{html}");
        }
    }
}
