//! The QLDB Session API's JSON: decoding a `SendCommand` body into a [`Command`] (with every
//! input check that needs no session state) and rendering an [`Outcome`] the way the drivers
//! read it (results as `IonBinary`, `FirstPage.Values` always present, timing and IO usage on
//! every result).

use std::time::Duration;

use base64::display::Base64Display;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ApiError, ErrorKind};
use crate::ion_codec::{decode_parameter, ValueHolder};
use crate::limits::{PARAMETERS_PER_STATEMENT_MAX, STATEMENT_LENGTH_MAX_CHARS};
use crate::session::{millis, Command, Outcome};

/// The only `X-Amz-Target` of the data plane.
pub const TARGET: &str = "QLDBSession.SendCommand";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendCommandRequest {
    session_token: Option<String>,
    start_session: Option<StartSessionRequest>,
    // The empty commands' members are read only to see they are there.
    start_transaction: Option<IgnoredAny>,
    end_session: Option<IgnoredAny>,
    commit_transaction: Option<CommitTransactionRequest>,
    abort_transaction: Option<IgnoredAny>,
    execute_statement: Option<ExecuteStatementRequest>,
    fetch_page: Option<FetchPageRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSessionRequest {
    ledger_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommitTransactionRequest {
    transaction_id: String,
    commit_digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteStatementRequest {
    transaction_id: String,
    statement: String,
    #[serde(default)]
    parameters: Vec<ValueHolder>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FetchPageRequest {
    transaction_id: String,
    next_page_token: String,
}

/// A decoded request: the session token (absent for StartSession) and the command.
#[derive(Debug, Clone)]
pub struct Request {
    /// `SessionToken`.
    pub session_token: Option<String>,
    /// The one command member.
    pub command: Command,
}

/// True for a token drivers could have received from us: 4–1024 characters of
/// `[A-Za-z0-9+/=-]` (the model's pattern).
fn is_token_shaped(token: &str) -> bool {
    (4..=1024).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-".contains(&b))
}

/// Decodes and checks a `SendCommand` body.
pub fn parse_request(body: &[u8]) -> Result<Request, ApiError> {
    let mut request: SendCommandRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorKind::Serialization,
            format!("Request body is not valid JSON: {e}"),
        )
    })?;
    if let Some(token) = &request.session_token {
        if !is_token_shaped(token) {
            return Err(ApiError::new(
                ErrorKind::InvalidSession,
                "Session token is not valid",
            ));
        }
    }
    let present = [
        request.start_session.is_some(),
        request.start_transaction.is_some(),
        request.end_session.is_some(),
        request.commit_transaction.is_some(),
        request.abort_transaction.is_some(),
        request.execute_statement.is_some(),
        request.fetch_page.is_some(),
    ];
    if present.iter().filter(|&&p| p).count() != 1 {
        return Err(ApiError::bad_request(
            "SendCommand needs exactly one command member",
        ));
    }
    let session_token = request.session_token.take();
    let command = command_of(request)?;
    if session_token.is_none() && !matches!(command, Command::StartSession { .. }) {
        return Err(ApiError::bad_request(
            "SessionToken is required for this command",
        ));
    }
    Ok(Request {
        session_token,
        command,
    })
}

/// The one command member as a [`Command`] (the caller checked there is exactly one).
fn command_of(commands: SendCommandRequest) -> Result<Command, ApiError> {
    if let Some(start) = commands.start_session {
        return Ok(Command::StartSession {
            ledger_name: start.ledger_name,
        });
    }
    if let Some(execute) = commands.execute_statement {
        return execute_command(execute);
    }
    if let Some(fetch) = commands.fetch_page {
        return Ok(Command::FetchPage {
            transaction_id: fetch.transaction_id,
            next_page_token: fetch.next_page_token,
        });
    }
    if let Some(commit) = commands.commit_transaction {
        let commit_digest = base64::engine::general_purpose::STANDARD
            .decode(&commit.commit_digest)
            .map_err(|e| ApiError::bad_request(format!("CommitDigest is not base64: {e}")))?;
        return Ok(Command::CommitTransaction {
            transaction_id: commit.transaction_id,
            commit_digest,
        });
    }
    if commands.start_transaction.is_some() {
        return Ok(Command::StartTransaction);
    }
    if commands.abort_transaction.is_some() {
        return Ok(Command::AbortTransaction);
    }
    if commands.end_session.is_some() {
        return Ok(Command::EndSession);
    }
    Err(ApiError::bad_request(
        "SendCommand needs exactly one command member",
    ))
}

fn execute_command(execute: ExecuteStatementRequest) -> Result<Command, ApiError> {
    let length = execute.statement.chars().count();
    if length == 0 || length > STATEMENT_LENGTH_MAX_CHARS {
        return Err(ApiError::bad_request(format!(
            "Statement length must be 1 to {STATEMENT_LENGTH_MAX_CHARS} characters, got {length}"
        )));
    }
    if execute.parameters.len() > PARAMETERS_PER_STATEMENT_MAX {
        return Err(ApiError::bad_request(format!(
            "At most {PARAMETERS_PER_STATEMENT_MAX} parameters per statement, got {}",
            execute.parameters.len()
        )));
    }
    let parameters = execute
        .parameters
        .iter()
        .enumerate()
        .map(|(index, holder)| decode_parameter(index, holder))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Command::ExecuteStatement {
        transaction_id: execute.transaction_id,
        statement: execute.statement,
        parameters,
    })
}

/// The result member's name for a command.
pub fn command_name(command: &Command) -> &'static str {
    match command {
        Command::StartSession { .. } => "StartSession",
        Command::StartTransaction => "StartTransaction",
        Command::ExecuteStatement { .. } => "ExecuteStatement",
        Command::FetchPage { .. } => "FetchPage",
        Command::CommitTransaction { .. } => "CommitTransaction",
        Command::AbortTransaction => "AbortTransaction",
        Command::EndSession => "EndSession",
    }
}

/// Renders a result as `{"<CommandName>": {...}}`, serialised straight from the outcome.
pub fn render(name: &str, outcome: &Outcome, elapsed: Duration) -> Vec<u8> {
    let mut body = Vec::with_capacity(160);
    body.extend_from_slice(b"{\"");
    // A command name is a fixed identifier: nothing in it needs escaping.
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(b"\":");
    let result = CommandResult {
        name,
        outcome,
        elapsed,
    };
    // Writing into a `Vec` cannot fail, and every value here is a string or a number.
    serde_json::to_writer(&mut body, &result).expect("a command result always serialises");
    body.push(b'}');
    body
}

/// The members of one command's result.
struct CommandResult<'a> {
    name: &'a str,
    outcome: &'a Outcome,
    elapsed: Duration,
}

impl Serialize for CommandResult<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut result = serializer.serialize_struct("Result", 4)?;
        result.serialize_field(
            "TimingInformation",
            &Timing {
                processing_time_milliseconds: millis(self.elapsed),
            },
        )?;
        match self.outcome {
            Outcome::SessionStarted { session_token } => {
                result.serialize_field("SessionToken", session_token)?;
            }
            Outcome::TransactionStarted { transaction_id } => {
                result.serialize_field("TransactionId", transaction_id)?;
            }
            Outcome::Page {
                values,
                next_page_token,
                read_ios,
            } => {
                let page = Page {
                    values: IonBinaryValues(values),
                    next_page_token: next_page_token.as_deref(),
                };
                let member = if self.name == "FetchPage" {
                    "Page"
                } else {
                    "FirstPage"
                };
                result.serialize_field(member, &page)?;
                result.serialize_field(
                    "ConsumedIOs",
                    &ConsumedIos {
                        read_ios: *read_ios,
                        write_ios: 0,
                    },
                )?;
            }
            Outcome::Committed {
                transaction_id,
                commit_digest,
                write_ios,
            } => {
                result.serialize_field("TransactionId", transaction_id)?;
                result.serialize_field("CommitDigest", &Base64(commit_digest.as_bytes()))?;
                result.serialize_field(
                    "ConsumedIOs",
                    &ConsumedIos {
                        read_ios: 0,
                        write_ios: *write_ios,
                    },
                )?;
            }
            Outcome::Done => {}
        }
        result.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Timing {
    processing_time_milliseconds: u64,
}

#[derive(Serialize)]
struct ConsumedIos {
    #[serde(rename = "ReadIOs")]
    read_ios: u64,
    #[serde(rename = "WriteIOs")]
    write_ios: u64,
}

/// `FirstPage` or `Page`; `Values` is always present, even when empty.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Page<'a> {
    values: IonBinaryValues<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<&'a str>,
}

/// Ion binary streams as `[{"IonBinary": "<base64>"}, …]`.
struct IonBinaryValues<'a>(&'a [Vec<u8>]);

impl Serialize for IonBinaryValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut values = serializer.serialize_seq(Some(self.0.len()))?;
        for value in self.0 {
            values.serialize_element(&IonBinary {
                ion_binary: Base64(value),
            })?;
        }
        values.end()
    }
}

#[derive(Serialize)]
struct IonBinary<'a> {
    #[serde(rename = "IonBinary")]
    ion_binary: Base64<'a>,
}

/// Bytes as standard base64, written into the output as it is encoded (no `String` first).
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(
            self.0,
            &base64::engine::general_purpose::STANDARD,
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn render_value(name: &str, outcome: &Outcome, elapsed: Duration) -> Value {
        serde_json::from_slice(&render(name, outcome, elapsed)).unwrap()
    }

    #[test]
    fn start_session_needs_no_token() {
        let request = parse_request(br#"{"StartSession":{"LedgerName":"books"}}"#).unwrap();
        assert!(request.session_token.is_none());
        assert!(
            matches!(request.command, Command::StartSession { ledger_name } if ledger_name == "books")
        );
    }

    #[test]
    fn malformed_requests_are_typed_errors() {
        let bad_json = parse_request(b"{not json").unwrap_err();
        assert_eq!(bad_json.kind, ErrorKind::Serialization);
        let two = br#"{"SessionToken":"abcd","StartTransaction":{},"EndSession":{}}"#;
        assert_eq!(parse_request(two).unwrap_err().kind, ErrorKind::BadRequest);
        let none = br#"{"SessionToken":"abcd"}"#;
        assert_eq!(parse_request(none).unwrap_err().kind, ErrorKind::BadRequest);
        let garbage_token = br#"{"SessionToken":"not a token!","StartTransaction":{}}"#;
        assert_eq!(
            parse_request(garbage_token).unwrap_err().kind,
            ErrorKind::InvalidSession
        );
        let no_token = br#"{"StartTransaction":{}}"#;
        assert_eq!(
            parse_request(no_token).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn statements_are_length_checked_and_parameters_decoded() {
        let long = "x".repeat(STATEMENT_LENGTH_MAX_CHARS + 1);
        let body = json!({"SessionToken": "abcd", "ExecuteStatement":
            {"TransactionId": "t", "Statement": long}});
        let error = parse_request(body.to_string().as_bytes()).unwrap_err();
        assert!(error.message.contains("100000"), "{}", error.message);
        let body = json!({"SessionToken": "abcd", "ExecuteStatement": {"TransactionId": "t",
            "Statement": "SELECT ?", "Parameters": [{"IonText": "1"}, {"IonText": "{"}]}});
        let error = parse_request(body.to_string().as_bytes()).unwrap_err();
        assert!(error.message.contains("Parameter 1"), "{}", error.message);
    }

    #[test]
    fn every_outcome_renders_as_the_drivers_read_it() {
        let digest = quill_verify::Hash([7; 32]);
        let committed = Outcome::Committed {
            transaction_id: "Tx1".into(),
            commit_digest: digest,
            write_ios: 2,
        };
        assert_eq!(
            render_value("CommitTransaction", &committed, Duration::from_millis(1)),
            json!({"CommitTransaction": {
                "TimingInformation": {"ProcessingTimeMilliseconds": 1},
                "TransactionId": "Tx1",
                "CommitDigest": digest.to_base64(),
                "ConsumedIOs": {"ReadIOs": 0, "WriteIOs": 2},
            }})
        );
        let started = Outcome::TransactionStarted {
            transaction_id: "Tx\"2".into(),
        };
        assert_eq!(
            render_value("StartTransaction", &started, Duration::ZERO),
            json!({"StartTransaction": {
                "TimingInformation": {"ProcessingTimeMilliseconds": 0},
                "TransactionId": "Tx\"2",
            }})
        );
        let session = Outcome::SessionStarted {
            session_token: "abcd".into(),
        };
        assert_eq!(
            render_value("StartSession", &session, Duration::ZERO)["StartSession"]["SessionToken"],
            "abcd"
        );
        assert_eq!(
            render_value("EndSession", &Outcome::Done, Duration::ZERO),
            json!({"EndSession": {"TimingInformation": {"ProcessingTimeMilliseconds": 0}}})
        );
        let values = Outcome::Page {
            values: vec![vec![0xe0, 1, 0, 0xea], vec![]],
            next_page_token: None,
            read_ios: 3,
        };
        let rendered = render_value("ExecuteStatement", &values, Duration::ZERO);
        assert_eq!(
            rendered["ExecuteStatement"]["FirstPage"]["Values"],
            json!([{"IonBinary": "4AEA6g=="}, {"IonBinary": ""}])
        );
        assert_eq!(
            rendered["ExecuteStatement"]["ConsumedIOs"],
            json!({"ReadIOs": 3, "WriteIOs": 0})
        );
    }

    #[test]
    fn first_page_always_has_values() {
        let outcome = Outcome::Page {
            values: vec![],
            next_page_token: None,
            read_ios: 0,
        };
        let rendered = render_value("ExecuteStatement", &outcome, Duration::from_millis(3));
        assert_eq!(
            rendered["ExecuteStatement"]["FirstPage"]["Values"],
            json!([])
        );
        assert!(rendered["ExecuteStatement"]["FirstPage"]
            .get("NextPageToken")
            .is_none());
        assert_eq!(
            rendered["ExecuteStatement"]["TimingInformation"]["ProcessingTimeMilliseconds"],
            3
        );
        let page = Outcome::Page {
            values: vec![vec![1]],
            next_page_token: Some("tok".into()),
            read_ios: 1,
        };
        let rendered = render_value("FetchPage", &page, Duration::ZERO);
        assert_eq!(
            rendered["FetchPage"]["Page"]["Values"][0]["IonBinary"],
            "AQ=="
        );
        assert_eq!(rendered["FetchPage"]["Page"]["NextPageToken"], "tok");
    }
}
