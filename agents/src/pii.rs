//! Personal data in what an agent reads and writes: [`PiiRedaction`] finds e-mail addresses,
//! phone numbers, payment card numbers (Luhn-checked) and IBANs (mod-97-checked) and redacts,
//! masks or blocks them.
//!
//! The checksums keep false positives down: a 16-digit order number is not a card unless its
//! Luhn digit is right, and a product code is not an IBAN unless its check digits are. Phone
//! numbers have no checksum; only international (`+` and country code) and North American
//! (`555-123-4567`, `(555) 123 4567`) shapes are taken, so dates, sums and ids are left alone.

use std::ops::Range;
use std::sync::LazyLock;

use catena_core::{Error, Message, Result, RunContext, ToolCall, ToolOutput, async_trait};
use regex::Regex;
use serde_json::Value;

use crate::agent::{Next, Plan};
use crate::middleware::{Conversation, Middleware, RunStats, ToolNext};

/// A kind of personal data [`PiiRedaction`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pii {
    /// `jane.doe@example.com`.
    Email,
    /// `+44 20 7946 0958`, `(555) 123-4567`.
    Phone,
    /// 13 to 19 digits, spaces or dashes between, with a valid Luhn check digit.
    Card,
    /// An International Bank Account Number with valid check digits.
    Iban,
}

impl Pii {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Email, Self::Phone, Self::Card, Self::Iban];

    /// The kind in words, for messages and redaction markers.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Card => "card",
            Self::Iban => "iban",
        }
    }

    fn described(self) -> &'static str {
        match self {
            Self::Email => "an e-mail address",
            Self::Phone => "a phone number",
            Self::Card => "a card number",
            Self::Iban => "an IBAN",
        }
    }
}

/// What [`PiiRedaction`] does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiAction {
    /// Replace it with a marker: `[REDACTED_EMAIL]`.
    Redact,
    /// Hide all but the end: `j***@example.com`, `**** **** **** 1111`.
    Mask,
    /// Refuse: the run fails (a question or an answer holding it) or the tool call is not made
    /// (the model is told why).
    Block,
}

/// One piece of personal data in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    /// What it is.
    pub kind: Pii,
    /// Where, in bytes.
    pub range: Range<usize>,
}

// The patterns are fixed and known to compile; `regex` runs in linear time, so hostile input
// cannot make a scan slow.
#[allow(clippy::expect_used)]
fn pattern(re: &str) -> Regex {
    Regex::new(re).expect("a fixed pattern")
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"));
static CARD: LazyLock<Regex> = LazyLock::new(|| pattern(r"\b\d(?:[ -]?\d){12,18}\b"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{2,4}){1,5}\b|(?:\(\d{3}\) ?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b",
    )
});

/// The Luhn check of a card number's digits.
fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum.is_multiple_of(10)
}

/// The ISO 13616 check: the first four characters moved to the end, letters as 10..35, the
/// number mod 97 is 1.
fn iban_valid(iban: &str) -> bool {
    if !(15..=34).contains(&iban.len()) {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut rest = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let Some(value) = c.to_digit(36) else { return false };
        for digit in if value >= 10 { vec![value / 10, value % 10] } else { vec![value] } {
            rest = (rest * 10 + digit) % 97;
        }
    }
    rest == 1
}

/// Finds the kinds of personal data chosen in `text`, without overlaps (e-mails first, then
/// IBANs, cards, phones), in the order they appear.
#[must_use]
pub fn find_pii(text: &str, kinds: &[Pii]) -> Vec<PiiMatch> {
    let mut found: Vec<PiiMatch> = Vec::new();
    let take = |kind: Pii, range: Range<usize>, found: &mut Vec<PiiMatch>| {
        if !found.iter().any(|m| m.range.start < range.end && range.start < m.range.end) {
            found.push(PiiMatch { kind, range });
        }
    };
    for kind in [Pii::Email, Pii::Iban, Pii::Card, Pii::Phone] {
        if !kinds.contains(&kind) {
            continue;
        }
        let re = match kind {
            Pii::Email => &*EMAIL,
            Pii::Iban => &*IBAN,
            Pii::Card => &*CARD,
            Pii::Phone => &*PHONE,
        };
        for m in re.find_iter(text) {
            let range = match kind {
                Pii::Card => {
                    let digits: Vec<u32> = m.as_str().chars().filter_map(|c| c.to_digit(10)).collect();
                    luhn(&digits).then(|| m.range())
                }
                // A greedy match may take a following short word; shorten it group by group.
                Pii::Iban => {
                    let mut end = m.end();
                    loop {
                        let candidate = text.get(m.start()..end).unwrap_or_default();
                        let compact: String = candidate.chars().filter(|c| *c != ' ').collect();
                        if iban_valid(&compact) {
                            break Some(m.start()..end);
                        }
                        match candidate.rfind(' ') {
                            Some(space) if compact.len() > 15 => end = m.start() + space,
                            _ => break None,
                        }
                    }
                }
                Pii::Phone => {
                    let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
                    (8..=15).contains(&digits).then(|| m.range())
                }
                Pii::Email => Some(m.range()),
            };
            if let Some(range) = range {
                take(kind, range, &mut found);
            }
        }
    }
    found.sort_by_key(|m| m.range.start);
    found
}

fn mask(kind: Pii, text: &str) -> String {
    if kind == Pii::Email
        && let Some((local, domain)) = text.split_once('@')
    {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    // Every letter and digit hidden but the last four; separators kept so the shape reads.
    let visible = text.chars().filter(char::is_ascii_alphanumeric).count().saturating_sub(4);
    let mut hidden = 0;
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() && hidden < visible {
                hidden += 1;
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// Finds personal data in every message the model is shown, every decision it makes and every
/// tool call, and redacts, masks or blocks it ([`PiiAction`]).
///
/// What it covers, as middleware ([`AgentExecutor::with_middleware`](crate::AgentExecutor::with_middleware)):
/// the question and the conversation before it (as the model sees them; the thread keeps what
/// was said), the model's answers, reasoning and tool-call arguments, and each tool's arguments
/// and result. With [`PiiAction::Block`], a question or an answer holding personal data fails
/// the run with [`Error::InvalidInput`] naming the kind; a tool call holding it is not made
/// and the model is told why.
///
/// ```
/// use catena_agents::{Pii, PiiAction, PiiRedaction};
///
/// let pii = PiiRedaction::new(PiiAction::Redact);
/// assert_eq!(
///     pii.apply("Mail jane@example.com or pay with 4111 1111 1111 1111.").unwrap(),
///     "Mail [REDACTED_EMAIL] or pay with [REDACTED_CARD]."
/// );
/// // Sixteen digits that fail the Luhn check are an order number, not a card.
/// assert_eq!(pii.apply("order 4111 1111 1111 1112").unwrap(), "order 4111 1111 1111 1112");
/// let masked = PiiRedaction::new(PiiAction::Mask).only([Pii::Iban]);
/// assert_eq!(masked.apply("IBAN GB82 WEST 1234 5698 7654 32").unwrap(), "IBAN **** **** **** **** **54 32");
/// ```
#[derive(Debug, Clone)]
pub struct PiiRedaction {
    action: PiiAction,
    kinds: Vec<Pii>,
}

impl PiiRedaction {
    /// Every kind of [`Pii`], handled by `action`.
    #[must_use]
    pub fn new(action: PiiAction) -> Self {
        Self { action, kinds: Pii::ALL.to_vec() }
    }

    /// Only these kinds.
    #[must_use]
    pub fn only(mut self, kinds: impl IntoIterator<Item = Pii>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// `text` with its personal data redacted or masked.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the kind found, under [`PiiAction::Block`].
    pub fn apply(&self, text: &str) -> Result<String> {
        let found = find_pii(text, &self.kinds);
        if found.is_empty() {
            return Ok(text.to_owned());
        }
        if self.action == PiiAction::Block {
            let kinds: Vec<&str> = found.iter().map(|m| m.kind.described()).collect();
            return Err(Error::invalid_input(format!(
                "the text holds {}, which the PII policy blocks; remove it and try again",
                kinds.join(" and ")
            )));
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for m in found {
            out.push_str(text.get(at..m.range.start).unwrap_or_default());
            let piece = text.get(m.range.clone()).unwrap_or_default();
            match self.action {
                PiiAction::Mask => out.push_str(&mask(m.kind, piece)),
                _ => out.push_str(&format!("[REDACTED_{}]", m.kind.as_str().to_uppercase())),
            }
            at = m.range.end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        Ok(out)
    }

    /// Every string inside `value`, through [`apply`](Self::apply).
    fn apply_json(&self, value: &mut Value) -> Result<()> {
        match value {
            Value::String(s) => *s = self.apply(s)?,
            Value::Array(items) => {
                for item in items {
                    self.apply_json(item)?;
                }
            }
            Value::Object(map) => {
                for item in map.values_mut() {
                    self.apply_json(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn apply_message(&self, message: &mut Message) -> Result<()> {
        message.content = self.apply(&message.content)?;
        for call in &mut message.tool_calls {
            self.apply_json(&mut call.arguments)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Middleware for PiiRedaction {
    async fn rewrite_conversation(&self, conversation: &mut Conversation, _ctx: &RunContext) -> Result<()> {
        conversation.input = self.apply(&conversation.input)?;
        for message in &mut conversation.history {
            self.apply_message(message)?;
        }
        Ok(())
    }

    async fn after_model(&self, plan: &mut Plan, _stats: &RunStats, _ctx: &RunContext) -> Result<()> {
        plan.log = self.apply(&plan.log)?;
        match &mut plan.next {
            Next::Finish(answer) => *answer = self.apply(answer)?,
            Next::Call(calls) => {
                for call in calls {
                    self.apply_json(&mut call.arguments)?;
                }
            }
            Next::Invalid(problem) => *problem = self.apply(problem)?,
        }
        Ok(())
    }

    async fn wrap_tool(
        &self,
        mut call: ToolCall,
        next: ToolNext<'_>,
        _stats: &RunStats,
    ) -> Result<ToolOutput> {
        // Arguments a person edited at an approval did not pass `after_model`.
        self.apply_json(&mut call.arguments)?;
        let mut output = next.run(call).await?;
        output.content = self.apply(&output.content)?;
        Ok(output)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Pii, &str)> {
        find_pii(text, &Pii::ALL).into_iter().map(|m| (m.kind, &text[m.range])).collect()
    }

    #[test]
    fn finds_each_kind_and_checks_the_checksums() {
        assert_eq!(kinds("write to a.b+c@mail.example.org."), [(Pii::Email, "a.b+c@mail.example.org")]);
        assert_eq!(kinds("card 4111-1111-1111-1111 ok"), [(Pii::Card, "4111-1111-1111-1111")]);
        assert_eq!(kinds("card 5500 0000 0000 0004"), [(Pii::Card, "5500 0000 0000 0004")]);
        assert!(kinds("order 4111 1111 1111 1112").is_empty(), "fails Luhn");
        assert_eq!(kinds("to DE89 3704 0044 0532 0130 00 now"), [(Pii::Iban, "DE89 3704 0044 0532 0130 00")]);
        assert_eq!(kinds("to DE89370400440532013000"), [(Pii::Iban, "DE89370400440532013000")]);
        assert_eq!(
            kinds("IBAN GB82 WEST 1234 5698 7654 32 THEN"),
            [(Pii::Iban, "GB82 WEST 1234 5698 7654 32")]
        );
        assert!(kinds("DE88 3704 0044 0532 0130 00").is_empty(), "wrong check digits");
        assert_eq!(kinds("call +44 20 7946 0958 today"), [(Pii::Phone, "+44 20 7946 0958")]);
        assert_eq!(kinds("call (555) 123-4567"), [(Pii::Phone, "(555) 123-4567")]);
        assert_eq!(kinds("call 555.123.4567"), [(Pii::Phone, "555.123.4567")]);
        // Dates, sums, versions and ids are not phones.
        assert!(kinds("on 2026-12-01, 12 * 12 = 144, v1.2.3, id 12345678, 3.14159").is_empty());
    }

    #[test]
    fn redacts_masks_and_blocks() {
        let text = "jane@example.com, 4111 1111 1111 1111, +1 555 123 4567";
        assert_eq!(
            PiiRedaction::new(PiiAction::Redact).apply(text).unwrap(),
            "[REDACTED_EMAIL], [REDACTED_CARD], [REDACTED_PHONE]"
        );
        assert_eq!(
            PiiRedaction::new(PiiAction::Mask).apply(text).unwrap(),
            "j***@example.com, **** **** **** 1111, +* *** *** 4567"
        );
        let blocked = PiiRedaction::new(PiiAction::Block).apply(text).unwrap_err();
        assert!(
            blocked.to_string().contains("an e-mail address and a card number and a phone number"),
            "{blocked}"
        );
        assert_eq!(PiiRedaction::new(PiiAction::Block).apply("no data here").unwrap(), "no data here");
        // Only the kinds chosen.
        assert_eq!(
            PiiRedaction::new(PiiAction::Redact).only([Pii::Card]).apply(text).unwrap(),
            "jane@example.com, [REDACTED_CARD], +1 555 123 4567"
        );
        // Masking twice changes nothing more.
        let once = PiiRedaction::new(PiiAction::Mask).apply(text).unwrap();
        assert_eq!(PiiRedaction::new(PiiAction::Mask).apply(&once).unwrap(), once);
    }
}
