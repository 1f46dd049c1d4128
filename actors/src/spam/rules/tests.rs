use super::*;
use crate::content::mime::ParsedMessage;

fn hits(book: &RuleBook, raw: &str) -> Vec<(String, f64)> {
    let raw = raw.replace('\n', "\r\n");
    let parsed = ParsedMessage::parse(raw.as_bytes());
    let mut input = RuleInput::new(raw.as_bytes(), &parsed, "sender@example.net");
    let mut out: Vec<(String, f64)> =
        book.check(&mut input, &|n| n == "OUTSIDE").into_iter().map(|h| (h.name, h.score)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn names(book: &RuleBook, raw: &str) -> Vec<String> {
    hits(book, raw).into_iter().map(|(n, _)| n).filter(|n| !n.starts_with("GH_")).collect()
}

const CF: &str = r#"
header   T1_SUBJECT   Subject =~ /\bwinner\b/i
score    T1_SUBJECT   2.5
header   T1_NO_XM     X-Mailer !~ /Thunderbird/
score    T1_NO_XM     0.5
header   T1_UNSET     X-Absent =~ /^fallback$/ [if-unset: fallback]
header   __T1_HAS_LIST exists:List-Id
body     T1_BODY      /cheap (?:pills|meds)/i
score    T1_BODY      1 2 3 4
rawbody  T1_RAW       /<blink>/i
uri      T1_URI       m{^https?://[^/]*\.test/}
full     T1_FULL      /^X-Odd: yes$/m
body     __T1_WORD    /\bmoney\b/i
tflags   __T1_WORD    multiple maxhits=5
meta     T1_MANY      __T1_WORD >= 3
meta     T1_META      T1_SUBJECT && !__T1_HAS_LIST
meta     T1_OUTSIDE   OUTSIDE && T1_BODY
body     T1_LOOKAHEAD /prize(?= now)/
body     T1_BACKREF   /(\w{3})-\1/
body     T1_EVAL      eval:check_stuff()
body     T1_BROKEN    /a{2,1}(/
meta     T1_CYCLE_A   T1_CYCLE_B
meta     T1_CYCLE_B   T1_CYCLE_A
header   T1_NAME      From:name =~ /^Lottery/
header   T1_ADDR      From:addr =~ /^win\@/
header   T1_ENV       EnvelopeFrom =~ /\@example\.net$/
score    T1_ENV       0
"#;

fn book() -> RuleBook {
    RuleBook::compile([("t1.cf", CF)])
}

#[test]
fn each_kind_of_rule_fires_on_what_it_reads() {
    let book = book();
    let msg = "From: Lottery Board <win@lottery.test>\nSubject: You are a WINNER\nX-Odd: yes\nContent-Type: text/html\n\n<p>Cheap pills!</p> <blink>money money money</blink> <a href=\"http://x.prize.test/claim\">claim</a> prize now abc-abc\n";
    assert_eq!(
        names(&book, msg),
        [
            "T1_ADDR",
            "T1_BACKREF",
            "T1_BODY",
            "T1_FULL",
            "T1_LOOKAHEAD",
            "T1_MANY",
            "T1_META",
            "T1_NAME",
            "T1_NO_XM",
            "T1_OUTSIDE",
            "T1_RAW",
            "T1_SUBJECT",
            "T1_UNSET",
            "T1_URI"
        ]
    );
    let scores = hits(&book, msg);
    let score = |n: &str| scores.iter().find(|(x, _)| x == n).map(|(_, s)| *s);
    assert_eq!(score("T1_BODY"), Some(3.0), "third of four score sets");
    assert_eq!(score("T1_SUBJECT"), Some(2.5));
    assert_eq!(score("T1_META"), Some(1.0), "no score line: 1");
    assert_eq!(score("T1_ENV"), None, "score 0: not shown");
}

#[test]
fn negations_lists_and_quiet_mail() {
    let book = book();
    let msg = "From: Ann <ann@example.org>\nSubject: minutes of the winner meeting\nX-Mailer: Thunderbird 115\nList-Id: <team.example.org>\nX-Absent: other\n\nmoney is discussed once\n";
    assert_eq!(names(&book, msg), ["T1_SUBJECT"]);
}

#[test]
fn what_does_not_compile_is_named_with_a_reason() {
    let book = book();
    let uncompiled: Vec<(&str, &str)> = book.uncompiled.iter().map(|u| (u.name.as_str(), u.reason.as_str())).collect();
    let names: Vec<&str> = uncompiled.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["T1_BROKEN", "T1_CYCLE_A", "T1_CYCLE_B", "T1_EVAL"], "{uncompiled:?}");
    assert!(uncompiled.iter().any(|(n, r)| *n == "T1_EVAL" && r.contains("check_stuff")));
    let engines: Vec<(&str, &str)> = book
        .summaries()
        .iter()
        .filter(|s| s.name.starts_with("T1_LOOK") || s.name == "T1_BODY")
        .map(|s| (s.name.as_str(), s.engine))
        .collect();
    assert_eq!(engines, [("T1_BODY", "regex"), ("T1_LOOKAHEAD", "pcre2")]);
}

#[test]
fn later_files_override_and_replace_tags_expand() {
    let base = "body T2_X /alpha/\nscore T2_X 1\n";
    let over = "body T2_X /beta/\nscore T2_X 4\nreplace_tag V (?:v|\\\\/)\nreplace_inter SP [\\s.]?\nbody T2_TAG /<V><inter SP><V>iagra/i\nreplace_rules T2_TAG\n";
    let book = RuleBook::compile([("a.cf", base), ("b.cf", over)]);
    assert!(book.uncompiled.is_empty(), "{:?}", book.uncompiled);
    assert_eq!(names(&book, "Subject: s\n\nalpha\n"), Vec::<String>::new());
    assert_eq!(hits(&book, "Subject: s\n\nbeta\n").iter().find(|h| h.0 == "T2_X").map(|h| h.1), Some(4.0));
    assert_eq!(names(&book, "Subject: s\n\nbuy v.viagra\n"), ["T2_TAG"]);
}

#[test]
fn default_rules_compile_whole_and_fire() {
    let book = RuleBook::compile([]);
    assert!(book.uncompiled.is_empty() && book.errors.is_empty(), "{:?} {:?}", book.uncompiled, book.errors);
    assert!(book.len() >= 30);
    let spam = "From: 12345678@bulk.test\nSubject: FREE MONEY!!!\n\nDear friend, click here to earn $500 a day working from home. Act now!\n<a href=\"http://198.51.100.7/x\">x</a>\n";
    let got: Vec<String> = hits(&book, spam).into_iter().map(|h| h.0).collect();
    for want in [
        "GH_MISSING_DATE",
        "GH_SUBJECT_SHOUTING",
        "GH_SUBJECT_EXCLAIMS",
        "GH_FROM_DIGITS_LOCAL",
        "GH_CLICK_HERE",
        "GH_EASY_MONEY",
        "GH_ACT_NOW",
        "GH_DEAR_GENERIC",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} not in {got:?}");
    }
    let ham = "From: Ann <ann@example.org>\nTo: team@example.org\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <1@example.org>\nSubject: Notes from Monday\n\nHi all, the notes are attached. Ann\n";
    assert!(hits(&book, ham).is_empty(), "{:?}", hits(&book, ham));
}

#[test]
fn hostile_rule_files_are_bounded() {
    let many_parens = format!("meta T3_DEEP {}A{}\n", "(".repeat(5000), ")".repeat(5000));
    let huge_rep = "body T3_HUGE /a{100000}{100000}/\n";
    let book = RuleBook::compile([("h.cf", many_parens.as_str()), ("g.cf", huge_rep)]);
    let names: Vec<&str> = book.uncompiled.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["T3_DEEP", "T3_HUGE"]);
}

mod hostile {
    use super::super::meta::MetaExpr;
    use super::super::parse::RuleFiles;
    use super::super::perl::PerlMatch;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Whatever a rule file holds, reading and compiling it returns (rules,
        /// errors, uncompiled) and never panics; Latin-1 chars included.
        #[test]
        fn any_rule_file_compiles_or_is_refused_without_panicking(
            lines in proptest::collection::vec(
                prop_oneof![
                    "(header|body|rawbody|uri|full|meta|score|describe|tflags|if|ifplugin|endif|else|replace_tag|replace_rules) [A-Z_]{1,8} .{0,40}",
                    "header [A-Z]{1,6} [A-Za-z-]{1,10}(:raw|:addr|:name)? (=~|!~) (/|m\\{|m!).{0,30}(/|\\}|!)[imsxg]{0,3}( \\[if-unset: .{0,5}\\])?",
                    "meta [A-Z]{1,6} [A-Z!&|()+<>=0-9 ]{0,40}",
                    "[\\x00-\\xff]{0,60}",
                ],
                0..20,
            )
        ) {
            let text = lines.join("\n");
            let book = RuleBook::compile([("p.cf", text.as_str())]);
            let raw = "Subject: x\r\nFrom: A <a@b.example>\r\n\r\nbody http://x.example/ text\r\n";
            let parsed = ParsedMessage::parse(raw.as_bytes());
            let mut input = RuleInput::new(raw.as_bytes(), &parsed, "a@b.example");
            let _ = book.check(&mut input, &|_| false);
            let _ = RuleFiles::read([("p.cf", text.as_str())]);
        }

        #[test]
        fn any_meta_or_pattern_text_parses_or_errs(text in "[\\x00-\\xff]{0,80}") {
            let _ = MetaExpr::parse(&text).map(|e| e.eval(&|_| 1.0));
            if let Ok(p) = PerlMatch::parse(&format!("/{text}/")) {
                let _ = p.to_rust(true);
                let _ = p.relaxed().to_rust(false);
            }
            let _ = PerlMatch::parse(&text);
        }
    }
}
