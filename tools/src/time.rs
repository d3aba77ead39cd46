//! [`DateTimeTool`]: the current date and time, in any IANA time zone.

use catena_core::{Error, Result, RunContext, ToolOutput, TypedTool, async_trait};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::Deserialize;

/// Tells the model what time it is: models have no clock, and questions like "what day is it" or
/// "how many days until..." need one. Time zones come from the system's tz database (jiff).
///
/// Safety limits: reads the clock and nothing else; an unknown zone name is an error listing the
/// expected shape (`Europe/Paris`).
///
/// ```
/// use catena_core::{RunContext, Tool};
/// use catena_tools::DateTimeTool;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let tool = DateTimeTool::at("2026-11-27T13:45:00Z".parse().unwrap());
/// let out = tool.call(serde_json::json!({"timezone": "Asia/Tokyo"}), &RunContext::new()).await.unwrap();
/// assert_eq!(out.content, "Friday 2026-11-27 22:45:00 (Asia/Tokyo, UTC+09:00)");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct DateTimeTool {
    fixed: Option<Timestamp>,
    default_zone: Option<String>,
}

/// Arguments of [`DateTimeTool`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DateTimeArgs {
    /// An IANA time zone such as "Europe/Paris" or "UTC"; omit it for the default zone.
    #[serde(default)]
    pub timezone: Option<String>,
}

impl DateTimeTool {
    /// The real clock, in the system's time zone unless the model names one.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A stopped clock showing `instant` (for tests and reproducible evaluations).
    #[must_use]
    pub fn at(instant: Timestamp) -> Self {
        Self { fixed: Some(instant), default_zone: None }
    }

    /// The zone used when the model names none (default: the system's, UTC when unknown).
    #[must_use]
    pub fn with_default_zone(mut self, zone: impl Into<String>) -> Self {
        self.default_zone = Some(zone.into());
        self
    }
}

#[async_trait]
impl TypedTool for DateTimeTool {
    type Args = DateTimeArgs;
    const NAME: &'static str = "current_datetime";
    const DESCRIPTION: &'static str =
        "Returns the current date, weekday and time, optionally in a given IANA time zone.";
    const READ_ONLY: bool = true;

    async fn run(&self, args: DateTimeArgs, _ctx: &RunContext) -> Result<ToolOutput> {
        let asked = args.timezone.as_deref().map(str::trim).filter(|z| !z.is_empty());
        let (zone, label) = match asked.or(self.default_zone.as_deref()) {
            Some(name) => {
                let zone = TimeZone::get(name).map_err(|_| {
                    Error::tool(
                        Self::NAME,
                        format!(
                            "unknown time zone {name:?}; use an IANA name such as \"Europe/Paris\" or \"UTC\""
                        ),
                    )
                })?;
                (zone, name.to_owned())
            }
            None => {
                let zone = TimeZone::try_system().unwrap_or(TimeZone::UTC);
                let label = zone.iana_name().unwrap_or("UTC").to_owned();
                (zone, label)
            }
        };
        let now = self.fixed.unwrap_or_else(Timestamp::now).to_zoned(zone);
        let text = format!(
            "{} {} ({label}, UTC{})",
            now.strftime("%A"),
            now.strftime("%Y-%m-%d %H:%M:%S"),
            now.strftime("%:z"),
        );
        Ok(ToolOutput { content: text, artifact: Some(serde_json::Value::String(now.to_string())) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use catena_core::Tool;
    use serde_json::json;

    #[tokio::test]
    async fn zones_default_zone_and_unknown_zone() {
        let tool =
            DateTimeTool::at("2026-03-29T00:30:00Z".parse().unwrap()).with_default_zone("Europe/Paris");
        let ctx = RunContext::new();
        let paris = tool.call(json!({}), &ctx).await.unwrap();
        assert_eq!(paris.content, "Sunday 2026-03-29 01:30:00 (Europe/Paris, UTC+01:00)");
        let utc = tool.call(json!({"timezone": "UTC"}), &ctx).await.unwrap();
        assert_eq!(utc.content, "Sunday 2026-03-29 00:30:00 (UTC, UTC+00:00)");
        let err = tool.call(json!({"timezone": "Mars/Olympus"}), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("unknown time zone \"Mars/Olympus\""), "{err}");
        let live = DateTimeTool::new().call(json!({"timezone": null}), &ctx).await.unwrap();
        let year = Timestamp::now().to_zoned(TimeZone::UTC).year();
        assert!(
            live.content.contains(&format!(" {year}-")) || live.content.contains(&format!(" {}-", year + 1)),
            "{}",
            live.content
        );
    }
}
