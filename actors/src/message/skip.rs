//! Which later checks a message skips.

use consensus::state::RuleKind;

/// Later checks a whitelisted message skips: the matrix MailPlus documents
/// for its whitelist, by the kind of rule that matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipChecks {
    pub dnsbl: bool,
    pub spf: bool,
    pub antivirus: bool,
    pub dkim: bool,
    pub dmarc: bool,
    /// Spam scoring; skipped for trusted networks (Kerio).
    pub spam: bool,
    /// Greylisting; skipped for any whitelist match unless a greylist rule says `always`.
    pub greylist: bool,
}

impl SkipChecks {
    /// What a whitelist rule of this kind lets a message skip.
    pub fn for_whitelist(kind: RuleKind) -> Self {
        let none = SkipChecks { greylist: true, ..Default::default() };
        match kind {
            RuleKind::Ip => SkipChecks { dnsbl: true, spf: true, antivirus: true, dkim: true, dmarc: true, ..none },
            RuleKind::Subnet => SkipChecks { dnsbl: true, spf: true, dkim: true, dmarc: true, ..none },
            RuleKind::Sender | RuleKind::Recipient => SkipChecks { spf: true, antivirus: true, ..none },
            RuleKind::SenderDomain => SkipChecks { spf: true, antivirus: true, dkim: true, dmarc: true, ..none },
            RuleKind::Zone => SkipChecks::default(),
        }
    }

    /// A client in `smtp.trusted_networks`: no spam scoring, no greylisting.
    pub fn trusted_network() -> Self {
        SkipChecks { spam: true, greylist: true, ..Default::default() }
    }

    pub fn union(self, o: Self) -> Self {
        SkipChecks {
            dnsbl: self.dnsbl || o.dnsbl,
            spf: self.spf || o.spf,
            antivirus: self.antivirus || o.antivirus,
            dkim: self.dkim || o.dkim,
            dmarc: self.dmarc || o.dmarc,
            spam: self.spam || o.spam,
            greylist: self.greylist || o.greylist,
        }
    }

    /// The skipped checks by name, for logs.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.dnsbl, "dnsbl"),
            (self.spf, "spf"),
            (self.antivirus, "antivirus"),
            (self.dkim, "dkim"),
            (self.dmarc, "dmarc"),
            (self.spam, "spam"),
            (self.greylist, "greylist"),
        ];
        all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }
}
