//! A calculator tool: arithmetic through a real expression parser (exmex), never code execution.

use catena_core::{Error, Result, RunContext, ToolOutput, TypedTool, async_trait};
use schemars::JsonSchema;
use serde::Deserialize;

/// Longest expression accepted; models do not need more, and parsing stays trivially cheap.
const MAX_EXPRESSION_CHARS: usize = 500;

/// Evaluates arithmetic: `+ - * / ^`, parentheses, `sqrt`, `cbrt`, `exp`, `ln` and `log` (both
/// natural), `log2`, `log10`, `sin`/`cos`/`tan` and their inverses, `abs`, `floor`, `ceil`,
/// `round`, `signum`, and the constants `PI` and `E`. No variables, no assignments, no code.
///
/// Safety limits: expressions up to 500 characters; a result that is not a finite number
/// (`1/0`, `2^5000`) is an error, not `inf`.
///
/// ```
/// use catena_core::{RunContext, Tool};
/// use catena_tools::Calculator;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let out = Calculator.call(serde_json::json!({"expression": "(2 + 3) * 4 ^ 2"}), &RunContext::new()).await.unwrap();
/// assert_eq!(out.content, "80");
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Calculator;

/// Arguments of [`Calculator`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CalculatorArgs {
    /// The arithmetic to evaluate, written with numbers, operators and parentheses.
    pub expression: String,
}

/// A result as text: integers without a fraction, other numbers as Rust prints them (shortest
/// text that reads back to the same f64).
fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

/// Evaluates `expression`, with the errors a model can act on.
pub fn evaluate(expression: &str) -> Result<f64> {
    let expression = expression.trim();
    if expression.is_empty() {
        return Err(Error::tool("calculator", "the expression is empty"));
    }
    if expression.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(Error::tool(
            "calculator",
            format!("the expression is longer than {MAX_EXPRESSION_CHARS} characters"),
        ));
    }
    let value = exmex::eval_str::<f64>(expression)
        .map_err(|e| Error::tool("calculator", format!("cannot evaluate {expression:?}: {}", e.msg())))?;
    if !value.is_finite() {
        return Err(Error::tool(
            "calculator",
            format!("{expression:?} has no finite value (division by zero or overflow)"),
        ));
    }
    Ok(value)
}

#[async_trait]
impl TypedTool for Calculator {
    type Args = CalculatorArgs;
    const NAME: &'static str = "calculator";
    const DESCRIPTION: &'static str = "Evaluates an arithmetic expression (+ - * / ^, parentheses, sqrt, ln, sin, cos, tan, abs, round, PI, E) and returns the number.";
    const READ_ONLY: bool = true;

    async fn run(&self, args: CalculatorArgs, _ctx: &RunContext) -> Result<ToolOutput> {
        evaluate(&args.expression).map(|x| ToolOutput::text(format_number(x)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arithmetic_functions_and_constants() {
        for (expression, want) in [
            ("1 + 2 * 3", "7"),
            ("(1 + 2) * 3", "9"),
            ("2 ^ 10", "1024"),
            ("7 / 2", "3.5"),
            ("sqrt(16) + abs(-2)", "6"),
            ("round(2.4) + floor(1.9) + ceil(0.1)", "4"),
            ("-3 * -3", "9"),
            ("0.1 + 0.2", "0.30000000000000004"),
        ] {
            assert_eq!(format_number(evaluate(expression).unwrap()), want, "{expression}");
        }
        assert!((evaluate("2 * PI").unwrap() - std::f64::consts::TAU).abs() < 1e-12);
        assert!((evaluate("ln(E)").unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_expressions_are_tool_errors_that_say_why() {
        for (expression, needle) in [
            ("", "empty"),
            ("1 / 0", "no finite value"),
            ("2 ^ 5000", "no finite value"),
            ("(((1", "cannot evaluate"),
            ("x + 1", "cannot evaluate"),
            ("std::process::exit(1)", "cannot evaluate"),
        ] {
            let err = evaluate(expression).unwrap_err();
            assert_eq!(err.kind(), catena_core::ErrorKind::Tool, "{expression}");
            assert!(err.to_string().contains(needle), "{expression}: {err}");
        }
        let long = "1+".repeat(300) + "1";
        assert!(evaluate(&long).unwrap_err().to_string().contains("longer than 500"));
    }
}
