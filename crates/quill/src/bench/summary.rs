//! The table printed at the end of a benchmark run: each figure next to its goal, so a
//! reader sees at a glance what is met and what the lead should optimise.

/// Rows of measured figures against goals.
#[derive(Debug, Default)]
pub struct Summary {
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    metric: String,
    measured: String,
    goal: String,
    met: Option<bool>,
}

/// Rows a summary holds: every benchmark adds a handful, so this only guards against a loop
/// adding rows by mistake.
const ROWS_MAX: usize = 256;

impl Summary {
    /// An empty summary.
    pub fn new() -> Summary {
        Summary::default()
    }

    /// Adds a row; `met` is `None` for figures without a goal.
    pub fn row(
        &mut self,
        metric: &str,
        measured: impl Into<String>,
        goal: &str,
        met: Option<bool>,
    ) {
        if self.rows.len() < ROWS_MAX {
            self.rows.push(Row {
                metric: metric.to_owned(),
                measured: measured.into(),
                goal: goal.to_owned(),
                met,
            });
        }
    }

    /// The table as text (a Markdown table, so it can be pasted into docs/benchmarks.md).
    pub fn render(&self) -> String {
        let mut out = String::from("| metric | measured | goal | met |\n|---|---|---|---|\n");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.metric, r.measured, r.goal, met
            ));
        }
        out
    }

    /// Prints the table under a heading.
    pub fn print(&self) {
        println!("\nSummary\n{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_goals_and_verdicts() {
        let mut s = Summary::new();
        s.row("a", "1", "≤ 2", Some(true));
        s.row("b", "3", "≤ 2", Some(false));
        s.row("c", "4", "-", None);
        let text = s.render();
        assert!(text.contains("| a | 1 | ≤ 2 | yes |"));
        assert!(text.contains("| b | 3 | ≤ 2 | NO |"));
        assert!(text.contains("| c | 4 | - | - |"));
    }
}
