//! CAP 1.2 (OASIS Common Alerting Protocol): the model of an alert, its XML writer and its parser.
//!
//! Warnings broadcast by the bot can also be published as CAP 1.2 documents, the format that
//! emergency-alert aggregators and public warning systems exchange; alerts from other senders can
//! be read the same way. The model keeps the parts of a CAP message this crate uses (identity,
//! status, type, scope, note, references, and per `<info>` block the event, its classification,
//! texts, expiry and areas with their descriptions, polygons and circles); everything else in a
//! document (`<web>`, `<parameter>`, `<resource>`, `<geocode>`, signatures …) is skipped when
//! parsing.
//!
//! - [`Alert::to_xml`] writes a document that validates against the official `CAP-v1.2.xsd`
//!   (elements in the schema's order, the CAP namespace on `<alert>`), provided the alert passes
//!   [`Alert::validate`]; every alert returned by [`Alert::parse`] does.
//! - [`Alert::parse`] requires the CAP 1.2 namespace (with or without a prefix), trims the XML
//!   whitespace around text values and rejects values the schema or the specification forbid, with
//!   a [`CapError`] that names the element and says what is expected.
//! - Date-times use CAP's form, see [`format_datetime`].
//! - [`alert_of`] writes a broadcast as an alert (an Update of the one it corrects, the Cancel
//!   that withdraws it once cancelled); [`severity_of`], [`Info::resident_text`] and
//!   [`Alert::own_reference`] read an imported alert back into a broadcast.
//!
//! The model has no `<restriction>` or `<addresses>`, which the specification expects with the
//! scopes `Restricted` and `Private`: documents written for those scopes are schema-valid but say
//! nothing about who may receive them.

use std::io;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use quick_xml::Writer;
use quick_xml::escape::{partial_escape, resolve_xml_entity};
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use crate::domain::{BroadcastKind, BroadcastStatus, Severity};
use crate::store::broadcasts::BroadcastRow;

/// The XML namespace of CAP 1.2 documents; `<alert>` must be in it.
pub const CAP_NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// The values CAP allows in `<scope>`.
const SCOPES: &[&str] = &["Public", "Restricted", "Private"];
/// The values CAP allows in `<category>`.
const CATEGORIES: &[&str] =
    &["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"];
/// The values CAP allows in `<urgency>`.
const URGENCIES: &[&str] = &["Immediate", "Expected", "Future", "Past", "Unknown"];
/// The values CAP allows in `<severity>`.
const SEVERITIES: &[&str] = &["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
/// The values CAP allows in `<certainty>`.
const CERTAINTIES: &[&str] = &["Observed", "Likely", "Possible", "Unlikely", "Unknown"];

/// How deeply elements may nest in a parsed document. CAP itself needs 5 levels
/// (alert/info/area/geocode/value) and an XML signature a few more; the limit keeps a hostile
/// document from exhausting memory or the stack.
const MAX_DEPTH: usize = 32;

/// `<status>`: the code denoting the appropriate handling of the alert (the domain's
/// [`CapStatus`](crate::domain::CapStatus), stored with a broadcast). CAP spells it exactly,
/// case included: an alert is read with `Status::from_code`, not the lenient `parse`.
pub use crate::domain::CapStatus as Status;

/// `<msgType>`: the nature of the alert message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// Initial information requiring attention by targeted recipients.
    Alert,
    /// Updates and supersedes the earlier message(s) identified in `<references>`.
    Update,
    /// Cancels the earlier message(s) identified in `<references>`.
    Cancel,
    /// Acknowledges receipt and acceptance of the message(s) identified in `<references>`.
    Ack,
    /// Indicates rejection of the message(s) identified in `<references>`.
    Error,
}

impl MsgType {
    /// Every message type, in the schema's order.
    const ALL: [MsgType; 5] = [MsgType::Alert, MsgType::Update, MsgType::Cancel, MsgType::Ack, MsgType::Error];
    /// The CAP spellings of [`MsgType::ALL`], for error messages.
    const NAMES: &[&str] = &["Alert", "Update", "Cancel", "Ack", "Error"];

    /// The value as CAP spells it in `<msgType>`.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Alert => "Alert",
            MsgType::Update => "Update",
            MsgType::Cancel => "Cancel",
            MsgType::Ack => "Ack",
            MsgType::Error => "Error",
        }
    }

    /// The message type CAP spells `s` (exactly, case included), or `None`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|msg_type| msg_type.as_str() == s)
    }
}

/// One entry of `<references>`: "sender,identifier,sent" (entries separated by whitespace).
///
/// It names an earlier message that an `Update`, `Cancel`, `Ack` or `Error` refers to; build one
/// from that message with [`Alert::reference`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The `<sender>` of the earlier message.
    pub sender: String,
    /// The `<identifier>` of the earlier message.
    pub identifier: String,
    /// The `<sent>` of the earlier message, as CAP writes it (see [`format_datetime`]).
    pub sent: String,
}

impl Reference {
    /// The entry as CAP writes it: "sender,identifier,sent".
    pub fn to_text(&self) -> String {
        format!("{},{},{}", self.sender, self.identifier, self.sent)
    }

    /// Parses one whitespace-free entry "sender,identifier,sent".
    fn parse(entry: &str) -> Result<Self, CapError> {
        let parts: Vec<&str> = entry.split(',').collect();
        let &[sender, identifier, sent] = parts.as_slice() else {
            return Err(CapError::BadReference {
                entry: entry.to_owned(),
                problem: format!("it has {} comma-separated parts instead of 3", parts.len()),
            });
        };
        let reference =
            Reference { sender: sender.to_owned(), identifier: identifier.to_owned(), sent: sent.to_owned() };
        reference.validate()?;
        Ok(reference)
    }

    /// Checks that the entry can be written and read back: CAP identifiers and a CAP date-time.
    fn validate(&self) -> Result<(), CapError> {
        let problem = if !is_cap_identifier(&self.sender) {
            Some(format!("the sender {:?} is empty or has spaces, commas, '<' or '&'", self.sender))
        } else if !is_cap_identifier(&self.identifier) {
            Some(format!("the identifier {:?} is empty or has spaces, commas, '<' or '&'", self.identifier))
        } else if parse_datetime("references", &self.sent).is_err() {
            Some(format!("the sent time {:?} is not a CAP date-time (like 2026-11-23T09:00:00+08:00)", self.sent))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(CapError::BadReference { entry: self.to_text(), problem }),
            None => Ok(()),
        }
    }
}

/// A CAP 1.2 `<alert>` message, with the elements this crate keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `<identifier>`: unique for the sender; no spaces, commas, `<` or `&`.
    pub identifier: String,
    /// `<sender>`: globally unique originator, e.g. an e-mail address or domain; same character rules.
    pub sender: String,
    /// `<sent>`: when the message was issued; written with seconds precision and its offset.
    pub sent: DateTime<FixedOffset>,
    /// `<status>`: how the message must be handled.
    pub status: Status,
    /// `<msgType>`: what the message does.
    pub msg_type: MsgType,
    /// `<scope>`: "Public", "Restricted" or "Private".
    pub scope: String,
    /// `<note>`: free text, e.g. why a message is cancelled or in error.
    pub note: Option<String>,
    /// `<references>`: the earlier messages this one updates, cancels, acknowledges or rejects.
    pub references: Vec<Reference>,
    /// The `<info>` blocks, e.g. one per language.
    pub info: Vec<Info>,
}

/// One `<info>` block of an alert: the event and what recipients should know and do.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// `<language>`: an RFC 3066 language tag such as "zh-CN"; CAP assumes "en-US" when absent.
    pub language: Option<String>,
    /// `<category>` (at least one): Geo Met Safety Security Rescue Fire Health Env Transport Infra
    /// CBRNE Other.
    pub category: Vec<String>,
    /// `<event>`: the type of event, e.g. "治安预警".
    pub event: String,
    /// `<urgency>`: Immediate Expected Future Past Unknown.
    pub urgency: String,
    /// `<severity>`: Extreme Severe Moderate Minor Unknown.
    pub severity: String,
    /// `<certainty>`: Observed Likely Possible Unlikely Unknown.
    pub certainty: String,
    /// `<senderName>`: the human-readable name of the issuing agency.
    pub sender_name: Option<String>,
    /// `<headline>`: a brief headline, short enough for a text message.
    pub headline: Option<String>,
    /// `<description>`: an extended description of the event.
    pub description: Option<String>,
    /// `<instruction>`: the recommended action for recipients.
    pub instruction: Option<String>,
    /// `<expires>`: when the information stops being valid.
    pub expires: Option<DateTime<FixedOffset>>,
    /// The areas concerned, one `<area>` each.
    pub areas: Vec<Area>,
}

/// One `<area>`: its description and, when known, its outlines and circles (WGS-84).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Area {
    /// `<areaDesc>`: the place in words, e.g. "和庄村".
    pub desc: String,
    /// `<polygon>`: a closed ring of at least four "lat,lon" pairs separated by spaces, the
    /// first and last the same.
    pub polygons: Vec<String>,
    /// `<circle>`: "lat,lon radius" with the radius in kilometres.
    pub circles: Vec<String>,
}

impl Area {
    /// An area known only by its description.
    pub fn named(desc: impl Into<String>) -> Area {
        Area { desc: desc.into(), ..Area::default() }
    }

    /// The outlines of `shape` (WGS-84, x = longitude) as `<polygon>` texts: each polygon's
    /// outer ring (CAP has no holes), to 6 decimals.
    pub fn polygons_of(shape: &geo::MultiPolygon<f64>) -> Vec<String> {
        shape
            .0
            .iter()
            .map(|p| p.exterior().0.iter().map(|c| format!("{:.6},{:.6}", c.y, c.x)).collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// A `<circle>` text: `km` around (`lat`, `lon`).
    pub fn circle(lat: f64, lon: f64, km: f64) -> String {
        format!("{lat},{lon} {km}")
    }
}

/// The numbers of a "lat,lon" pair, `None` when it is not one.
fn point(pair: &str) -> Option<(f64, f64)> {
    let (lat, lon) = pair.split_once(',')?;
    let (lat, lon) = (lat.parse::<f64>().ok()?, lon.parse::<f64>().ok()?);
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// What is wrong with a `<polygon>`, if anything.
fn polygon_problem(value: &str) -> Option<&'static str> {
    let points: Option<Vec<(f64, f64)>> = value.split_whitespace().map(point).collect();
    match points {
        None => Some("every point must be \"lat,lon\" (WGS-84 degrees), points separated by spaces"),
        Some(p) if p.len() < 4 => Some("a polygon needs at least four points"),
        Some(p) if p.first() != p.last() => Some("the last point must repeat the first"),
        Some(_) => None,
    }
}

/// What is wrong with a `<circle>`, if anything.
fn circle_problem(value: &str) -> Option<&'static str> {
    let mut parts = value.split_whitespace();
    match (parts.next().and_then(point), parts.next().map(str::parse::<f64>), parts.next()) {
        (Some(_), Some(Ok(r)), None) if r >= 0.0 => None,
        _ => Some("write \"lat,lon radius\": a WGS-84 point and a radius in kilometres"),
    }
}

/// What is wrong with a CAP document, or with an [`Alert`] that [`Alert::validate`] rejects.
///
/// The messages name the element and say what CAP 1.2 expects instead.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    /// The text is not well-formed XML.
    #[error("not well-formed XML (near byte {position}): {source}")]
    Xml {
        /// Byte offset in the document where the reader stopped.
        position: u64,
        /// What the XML reader found.
        #[source]
        source: quick_xml::Error,
    },
    /// An entity other than the five predefined ones or a character reference.
    #[error("unknown entity &{name};: use only &lt; &gt; &amp; &apos; &quot; or character references like &#20013;")]
    UnknownEntity {
        /// The entity's name, without `&` and `;`.
        name: String,
    },
    /// The document ends before an element is closed.
    #[error("the document ends inside <{element}>: close it with </{element}>")]
    Unclosed {
        /// The element left open.
        element: String,
    },
    /// Elements nest deeper than any CAP document needs.
    #[error("elements nest more than {MAX_DEPTH} deep, which no CAP 1.2 document needs")]
    TooDeep,
    /// The document has no element at all.
    #[error("not a CAP 1.2 alert: the document has no root element, expected <alert xmlns=\"{CAP_NAMESPACE}\">")]
    NoRoot,
    /// The root element is not `<alert>` in the CAP 1.2 namespace.
    #[error("not a CAP 1.2 alert: the root element is {found}, expected <alert xmlns=\"{CAP_NAMESPACE}\">")]
    NotAnAlert {
        /// The root element as found, e.g. `<foo>` or `<alert xmlns="…:cap:1.1">`.
        found: String,
    },
    /// A second root element follows `</alert>`.
    #[error("the document has a second root element <{element}> after the <alert>; send one alert per document")]
    SecondRoot {
        /// The second root's name.
        element: String,
    },
    /// A required element is absent.
    #[error("{parent} has no <{element}>; CAP 1.2 requires it")]
    Missing {
        /// The element that should contain it, e.g. `<alert>` or `<info> #2`.
        parent: String,
        /// The missing element.
        element: &'static str,
    },
    /// An element that CAP allows once appears more than once.
    #[error("{parent} has more than one <{element}>; CAP 1.2 allows one")]
    Repeated {
        /// The element that contains the repetitions.
        parent: String,
        /// The repeated element.
        element: &'static str,
    },
    /// A text element contains an element.
    #[error("<{element}> must contain only text, but it contains <{child}>")]
    NotText {
        /// The text element.
        element: &'static str,
        /// The element found inside it.
        child: String,
    },
    /// A date-time that is not in CAP's form.
    #[error("<{element}> \"{value}\" is not a CAP date-time (like 2026-11-23T09:00:00+08:00)")]
    BadDateTime {
        /// The element holding it.
        element: &'static str,
        /// The value as found (or as it would be written).
        value: String,
    },
    /// A value outside the element's enumeration.
    #[error("<{element}> \"{value}\" is not one of {}", allowed.join(", "))]
    NotAllowed {
        /// The element holding it.
        element: &'static str,
        /// The value as found.
        value: String,
        /// The values CAP allows there.
        allowed: &'static [&'static str],
    },
    /// An `<identifier>` or `<sender>` that CAP forbids.
    #[error("<{element}> \"{value}\" must be non-empty, without spaces, commas, '<' or '&'")]
    BadIdentifier {
        /// `identifier` or `sender`.
        element: &'static str,
        /// The value as found.
        value: String,
    },
    /// An entry of `<references>` that is not "sender,identifier,sent".
    #[error("<references> entry \"{entry}\" is not \"sender,identifier,sent\": {problem}")]
    BadReference {
        /// The entry as found.
        entry: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A `<language>` that is not a language tag.
    #[error("<language> \"{value}\" is not a language tag (like zh-CN or en-US)")]
    BadLanguage {
        /// The value as found.
        value: String,
    },
    /// A `<polygon>` or `<circle>` that is not one.
    #[error("<{element}> \"{value}\": {problem}")]
    BadShape {
        /// `polygon` or `circle`.
        element: &'static str,
        /// The value as found.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A character that an XML 1.0 document cannot carry.
    #[error("<{element}> contains the character U+{code:04X}, which XML 1.0 cannot carry; remove it")]
    IllegalChar {
        /// The element holding it.
        element: &'static str,
        /// The character's code point.
        code: u32,
    },
}

/// CAP's date-time form: seconds precision, numeric offset, never "Z" (e.g.
/// 2026-11-23T09:00:00+08:00).
///
/// UTC is written "-00:00", as CAP 1.2 (§3.3.2) requires. Fractions of a second are dropped; an
/// offset with seconds (historic local mean times) is rounded to the minute, keeping the instant.
pub fn format_datetime(t: &DateTime<FixedOffset>) -> String {
    let seconds = t.offset().local_minus_utc();
    // Round to whole minutes; a FixedOffset stays strictly within ±24 hours.
    let minutes = (seconds + 30).div_euclid(60).clamp(-(24 * 60 - 1), 24 * 60 - 1);
    let offset = FixedOffset::east_opt(minutes * 60).expect("an offset under 24 hours is valid");
    let local = t.with_timezone(&offset);
    let sign = if minutes > 0 { '+' } else { '-' };
    let (hours, minutes) = (minutes.abs() / 60, minutes.abs() % 60);
    format!("{}{sign}{hours:02}:{minutes:02}", local.format("%Y-%m-%dT%H:%M:%S"))
}

/// Parses a CAP date-time (the schema's pattern `dddd-dd-ddTdd:dd:dd±dd:dd`, a valid date and time,
/// a year from 0001 to 9999); `element` names the element in the error.
fn parse_datetime(element: &'static str, text: &str) -> Result<DateTime<FixedOffset>, CapError> {
    const SHAPE: &[u8; 25] = b"0000-00-00T00:00:00+00:00";
    let bad = || CapError::BadDateTime { element, value: text.to_owned() };
    let shaped = text.len() == SHAPE.len()
        && text.bytes().zip(SHAPE).all(|(c, &shape)| match shape {
            b'0' => c.is_ascii_digit(),
            b'+' => c == b'+' || c == b'-',
            _ => c == shape,
        });
    if !shaped {
        return Err(bad());
    }
    let t = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%:z").map_err(|_| bad())?;
    // chrono reads a leap second ":60", which xs:dateTime does not have; year 0000 is not valid either.
    if t.nanosecond() != 0 || t.year() == 0 {
        return Err(bad());
    }
    Ok(t)
}

impl Alert {
    /// The alert as a CAP 1.2 XML document (with the XML declaration, UTF-8, namespace on
    /// `<alert>`), valid against the official XSD: elements in the schema's order.
    ///
    /// Text is escaped by the XML writer. The values are written as they are: an alert that
    /// [`Alert::validate`] rejects (a category CAP does not know, an identifier with a space …)
    /// gives a document the schema rejects too.
    pub fn to_xml(&self) -> String {
        let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
        self.write(&mut writer).expect("writing XML into a Vec<u8> cannot fail");
        let mut xml = String::from_utf8(writer.into_inner()).expect("the XML writer only writes the UTF-8 it is given");
        xml.push('\n');
        xml
    }

    /// Parses a CAP 1.2 document. Unknown elements the model does not keep (web, parameter,
    /// resource, eventCode, polygon, circle, geocode, responseType, effective, onset, contact,
    /// audience, code, source, restriction, addresses, incidents …) are skipped, not errors.
    /// Requires the CAP 1.2 namespace. Whitespace around text values is trimmed.
    ///
    /// The alert returned passes [`Alert::validate`], so its [`Alert::to_xml`] is schema-valid.
    pub fn parse(xml: &str) -> Result<Alert, CapError> {
        let root = read_document(xml)?;
        if !root.is_cap("alert") {
            return Err(CapError::NotAnAlert { found: root.describe() });
        }
        let parent = "<alert>";
        let status = root.required_text("status", parent)?;
        let msg_type = root.required_text("msgType", parent)?;
        let references = match root.optional_text("references", parent)? {
            Some(text) => text.split_ascii_whitespace().map(Reference::parse).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let infos: Vec<&Node> = root.cap_children("info").collect();
        let alert = Alert {
            identifier: root.required_text("identifier", parent)?,
            sender: root.required_text("sender", parent)?,
            sent: parse_datetime("sent", &root.required_text("sent", parent)?)?,
            status: Status::from_code(&status).ok_or(CapError::NotAllowed {
                element: "status",
                value: status,
                allowed: Status::CODES,
            })?,
            msg_type: MsgType::parse(&msg_type).ok_or(CapError::NotAllowed {
                element: "msgType",
                value: msg_type,
                allowed: MsgType::NAMES,
            })?,
            scope: root.required_text("scope", parent)?,
            note: root.optional_text("note", parent)?,
            references,
            info: infos
                .iter()
                .enumerate()
                .map(|(index, node)| Info::from_node(node, &info_label(index, infos.len())))
                .collect::<Result<_, _>>()?,
        };
        alert.validate()?;
        Ok(alert)
    }

    /// The references as CAP writes them: "sender,identifier,sent sender,identifier,sent".
    pub fn references_text(&self) -> String {
        self.references.iter().map(Reference::to_text).collect::<Vec<_>>().join(" ")
    }

    /// The entry that names this alert in the `<references>` of a later `Update`, `Cancel`, `Ack`
    /// or `Error`.
    pub fn reference(&self) -> Reference {
        Reference {
            sender: self.sender.clone(),
            identifier: self.identifier.clone(),
            sent: format_datetime(&self.sent),
        }
    }

    /// Checks what the schema and the CAP 1.2 specification require of the values the model
    /// keeps: identifier and sender without spaces, commas, `<` or `&`; scope, categories,
    /// urgency, severity and certainty among CAP's values; at least one category per `<info>`;
    /// language tags; references; date-times within years 0001–9999; no characters XML 1.0
    /// cannot carry.
    pub fn validate(&self) -> Result<(), CapError> {
        check_identifier("identifier", &self.identifier)?;
        check_identifier("sender", &self.sender)?;
        check_datetime("sent", &self.sent)?;
        check_one_of("scope", &self.scope, SCOPES)?;
        check_chars("note", self.note.as_deref())?;
        for reference in &self.references {
            reference.validate()?;
        }
        for (index, info) in self.info.iter().enumerate() {
            info.validate(&info_label(index, self.info.len()))?;
        }
        Ok(())
    }

    /// Writes the document: declaration, then `<alert>` with its elements in the schema's order.
    fn write(&self, w: &mut XmlWriter) -> io::Result<()> {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let alert = BytesStart::new("alert").with_attributes([("xmlns", CAP_NAMESPACE)]);
        w.write_event(Event::Start(alert.borrow()))?;
        write_text(w, "identifier", &self.identifier)?;
        write_text(w, "sender", &self.sender)?;
        write_text(w, "sent", &format_datetime(&self.sent))?;
        write_text(w, "status", self.status.as_str())?;
        write_text(w, "msgType", self.msg_type.as_str())?;
        write_text(w, "scope", &self.scope)?;
        write_optional(w, "note", self.note.as_deref())?;
        if !self.references.is_empty() {
            write_text(w, "references", &self.references_text())?;
        }
        for info in &self.info {
            info.write(w)?;
        }
        w.write_event(Event::End(alert.to_end()))
    }
}

impl Info {
    /// Reads an `<info>` element; `label` names it in errors.
    fn from_node(node: &Node, label: &str) -> Result<Info, CapError> {
        let category: Vec<String> =
            node.cap_children("category").map(|c| c.text_only("category")).collect::<Result<_, _>>()?;
        if category.is_empty() {
            return Err(CapError::Missing { parent: label.to_owned(), element: "category" });
        }
        let areas = node
            .cap_children("area")
            .enumerate()
            .map(|(index, area)| {
                let texts = |name: &'static str| {
                    area.cap_children(name).map(|n| n.text_only(name)).collect::<Result<Vec<_>, _>>()
                };
                Ok(Area {
                    desc: area.required_text("areaDesc", &format!("<area> #{} in {label}", index + 1))?,
                    polygons: texts("polygon")?,
                    circles: texts("circle")?,
                })
            })
            .collect::<Result<_, CapError>>()?;
        Ok(Info {
            language: node.optional_text("language", label)?,
            category,
            event: node.required_text("event", label)?,
            urgency: node.required_text("urgency", label)?,
            severity: node.required_text("severity", label)?,
            certainty: node.required_text("certainty", label)?,
            sender_name: node.optional_text("senderName", label)?,
            headline: node.optional_text("headline", label)?,
            description: node.optional_text("description", label)?,
            instruction: node.optional_text("instruction", label)?,
            expires: node.optional_text("expires", label)?.map(|text| parse_datetime("expires", &text)).transpose()?,
            areas,
        })
    }

    /// See [`Alert::validate`]; `label` names the block in errors.
    fn validate(&self, label: &str) -> Result<(), CapError> {
        if let Some(language) = &self.language
            && !is_language_tag(language)
        {
            return Err(CapError::BadLanguage { value: language.clone() });
        }
        if self.category.is_empty() {
            return Err(CapError::Missing { parent: label.to_owned(), element: "category" });
        }
        for category in &self.category {
            check_one_of("category", category, CATEGORIES)?;
        }
        check_chars("event", Some(&self.event))?;
        check_one_of("urgency", &self.urgency, URGENCIES)?;
        check_one_of("severity", &self.severity, SEVERITIES)?;
        check_one_of("certainty", &self.certainty, CERTAINTIES)?;
        check_chars("senderName", self.sender_name.as_deref())?;
        check_chars("headline", self.headline.as_deref())?;
        check_chars("description", self.description.as_deref())?;
        check_chars("instruction", self.instruction.as_deref())?;
        if let Some(expires) = &self.expires {
            check_datetime("expires", expires)?;
        }
        for area in &self.areas {
            check_chars("areaDesc", Some(&area.desc))?;
            let shapes = area.polygons.iter().map(|v| ("polygon", v, polygon_problem(v)));
            for (element, value, problem) in shapes.chain(area.circles.iter().map(|v| ("circle", v, circle_problem(v))))
            {
                if let Some(problem) = problem {
                    return Err(CapError::BadShape { element, value: value.clone(), problem });
                }
            }
        }
        Ok(())
    }

    /// Writes `<info>` with its elements in the schema's order.
    fn write(&self, w: &mut XmlWriter) -> io::Result<()> {
        w.create_element("info").write_inner_content(|w| {
            write_optional(w, "language", self.language.as_deref())?;
            for category in &self.category {
                write_text(w, "category", category)?;
            }
            write_text(w, "event", &self.event)?;
            write_text(w, "urgency", &self.urgency)?;
            write_text(w, "severity", &self.severity)?;
            write_text(w, "certainty", &self.certainty)?;
            write_optional(w, "expires", self.expires.as_ref().map(format_datetime).as_deref())?;
            write_optional(w, "senderName", self.sender_name.as_deref())?;
            write_optional(w, "headline", self.headline.as_deref())?;
            write_optional(w, "description", self.description.as_deref())?;
            write_optional(w, "instruction", self.instruction.as_deref())?;
            for area in &self.areas {
                w.create_element("area").write_inner_content(|w| {
                    write_text(w, "areaDesc", &area.desc)?;
                    for polygon in &area.polygons {
                        write_text(w, "polygon", polygon)?;
                    }
                    for circle in &area.circles {
                        write_text(w, "circle", circle)?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// How `<info>` number `index` (from 0) of `count` is named in errors.
fn info_label(index: usize, count: usize) -> String {
    if count == 1 { "<info>".to_owned() } else { format!("<info> #{}", index + 1) }
}

// ---------------------------------------------------------------------------------------------
// Value checks

/// CAP 1.2 §3.2.1: identifiers and senders "MUST NOT include spaces, commas or restricted
/// characters (< and &)".
fn is_cap_identifier(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
}

fn check_identifier(element: &'static str, value: &str) -> Result<(), CapError> {
    check_chars(element, Some(value))?;
    if is_cap_identifier(value) { Ok(()) } else { Err(CapError::BadIdentifier { element, value: value.to_owned() }) }
}

fn check_one_of(element: &'static str, value: &str, allowed: &'static [&'static str]) -> Result<(), CapError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(CapError::NotAllowed { element, value: value.to_owned(), allowed })
    }
}

/// Checks that a date-time can be written in CAP's form: a four-digit year from 0001.
fn check_datetime(element: &'static str, t: &DateTime<FixedOffset>) -> Result<(), CapError> {
    let value = format_datetime(t);
    // The written form carries the (rounded) local date, so check the year there.
    parse_datetime(element, &value).map(|_| ())
}

/// Rejects characters outside XML 1.0's `Char` production (most C0 controls, U+FFFE, U+FFFF).
fn check_chars(element: &'static str, value: Option<&str>) -> Result<(), CapError> {
    let illegal =
        |c: char| matches!(c, '\0'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    match value.and_then(|value| value.chars().find(|&c| illegal(c))) {
        Some(c) => Err(CapError::IllegalChar { element, code: u32::from(c) }),
        None => Ok(()),
    }
}

/// `xs:language`: `[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*`.
fn is_language_tag(value: &str) -> bool {
    let mut parts = value.split('-');
    let first_ok =
        parts.next().is_some_and(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

// ---------------------------------------------------------------------------------------------
// Writing

type XmlWriter = Writer<Vec<u8>>;

/// Writes `<name>value</name>`, the value escaped (`<`, `>` and `&`; quotes need no escaping in text).
fn write_text(w: &mut XmlWriter, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name).write_text_content(BytesText::from_escaped(partial_escape(value)))?;
    Ok(())
}

/// Writes `<name>value</name>` if there is a value.
fn write_optional(w: &mut XmlWriter, name: &str, value: Option<&str>) -> io::Result<()> {
    match value {
        Some(value) => write_text(w, name, value),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading: the document becomes a small element tree, then the model is taken from it.

/// The namespace an element is in.
#[derive(Debug, PartialEq, Eq)]
enum Ns {
    /// CAP 1.2.
    Cap,
    /// Another namespace.
    Other(String),
    /// None (or an undeclared prefix).
    None,
}

/// An element of a parsed document.
#[derive(Debug)]
struct Node {
    /// The local name (without prefix).
    name: String,
    ns: Ns,
    /// The element's own text, entities resolved, not trimmed.
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn new(ns: ResolveResult<'_>, start: &BytesStart<'_>) -> Node {
        let ns = match ns {
            ResolveResult::Bound(Namespace(ns)) if ns == CAP_NAMESPACE.as_bytes() => Ns::Cap,
            ResolveResult::Bound(Namespace(ns)) => Ns::Other(String::from_utf8_lossy(ns).into_owned()),
            ResolveResult::Unbound | ResolveResult::Unknown(_) => Ns::None,
        };
        let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        Node { name, ns, text: String::new(), children: Vec::new() }
    }

    fn is_cap(&self, name: &str) -> bool {
        self.ns == Ns::Cap && self.name == name
    }

    /// The element as error messages show it: `<name>` or `<name xmlns="…">`.
    fn describe(&self) -> String {
        match &self.ns {
            Ns::Cap => format!("<{} xmlns=\"{CAP_NAMESPACE}\">", self.name),
            Ns::Other(ns) => format!("<{} xmlns=\"{ns}\">", self.name),
            Ns::None => format!("<{}> (in no namespace)", self.name),
        }
    }

    /// The CAP children called `name`; elements of other namespaces are not CAP's.
    fn cap_children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |child| child.is_cap(name))
    }

    /// The trimmed text of a text-only element.
    fn text_only(&self, element: &'static str) -> Result<String, CapError> {
        if let Some(child) = self.children.first() {
            return Err(CapError::NotText { element, child: child.name.clone() });
        }
        Ok(self.text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r')).to_owned())
    }

    /// The text of the child `element`, which may appear at most once.
    fn optional_text(&self, element: &'static str, parent: &str) -> Result<Option<String>, CapError> {
        let mut found = self.cap_children(element);
        let first = found.next();
        if found.next().is_some() {
            return Err(CapError::Repeated { parent: parent.to_owned(), element });
        }
        first.map(|node| node.text_only(element)).transpose()
    }

    /// The text of the child `element`, which must appear exactly once.
    fn required_text(&self, element: &'static str, parent: &str) -> Result<String, CapError> {
        self.optional_text(element, parent)?.ok_or_else(|| CapError::Missing { parent: parent.to_owned(), element })
    }
}

/// Reads a whole document into its root element, resolving namespaces and entities.
fn read_document(xml: &str) -> Result<Node, CapError> {
    let mut reader = NsReader::from_str(xml);
    let mut open: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        // Where the event starts, for errors in its content.
        let position = reader.buffer_position();
        let (ns, event) = match reader.read_resolved_event() {
            Ok(read) => read,
            Err(source) => return Err(CapError::Xml { position: reader.error_position(), source }),
        };
        let xml_error = |source: quick_xml::Error| CapError::Xml { position, source };
        let closed = match event {
            Event::Start(start) => {
                if open.len() == MAX_DEPTH {
                    return Err(CapError::TooDeep);
                }
                open.push(Node::new(ns, &start));
                None
            }
            Event::Empty(start) => Some(Node::new(ns, &start)),
            // The reader checks that end tags match their start tags.
            Event::End(_) => open.pop(),
            Event::Text(text) => {
                if let Some(node) = open.last_mut() {
                    node.text.push_str(&text.xml10_content().map_err(|e| xml_error(e.into()))?);
                }
                None
            }
            Event::CData(cdata) => {
                if let Some(node) = open.last_mut() {
                    node.text.push_str(&cdata.xml10_content().map_err(|e| xml_error(e.into()))?);
                }
                None
            }
            Event::GeneralRef(reference) => {
                if let Some(node) = open.last_mut() {
                    match reference.resolve_char_ref().map_err(xml_error)? {
                        Some(c) => node.text.push(c),
                        None => {
                            let name = reference.decode().map_err(|e| xml_error(e.into()))?;
                            let resolved = resolve_xml_entity(&name)
                                .ok_or_else(|| CapError::UnknownEntity { name: name.to_string() })?;
                            node.text.push_str(resolved);
                        }
                    }
                }
                None
            }
            Event::Eof => break,
            // The declaration, comments, processing instructions and a DOCTYPE carry nothing for CAP.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => None,
        };
        if let Some(node) = closed {
            match (open.last_mut(), &root) {
                (Some(parent), _) => parent.children.push(node),
                (None, None) => root = Some(node),
                (None, Some(_)) => return Err(CapError::SecondRoot { element: node.name }),
            }
        }
    }
    if let Some(node) = open.pop() {
        return Err(CapError::Unclosed { element: node.name });
    }
    root.ok_or(CapError::NoRoot)
}

// ---------------------------------------------------------------------------------------------
// Broadcasts as alerts and back

/// CAP's urgency and severity of a broadcast's severity.
pub fn levels_of(severity: Severity) -> (&'static str, &'static str) {
    match severity {
        Severity::Urgent => ("Immediate", "Severe"),
        Severity::Important => ("Expected", "Moderate"),
        Severity::Normal => ("Future", "Minor"),
    }
}

/// A broadcast's severity of a CAP alert's info.
pub fn severity_of(info: &Info) -> Severity {
    match (info.severity.as_str(), info.urgency.as_str()) {
        ("Extreme" | "Severe", _) | (_, "Immediate") => Severity::Urgent,
        ("Moderate", _) => Severity::Important,
        _ => Severity::Normal,
    }
}

/// The CAP sender of a broadcast: `cunjing` for an officer's or a nameless one, otherwise
/// `cunjing.` and the sender's label (its ASCII letters and digits).
pub fn sender_of(b: &BroadcastRow) -> String {
    // An imported alert keeps its sender in its identifier's reference; ours are cunjing's.
    let label: String = b.sender_label.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if b.sender_officer_id.is_some() || label.is_empty() { "cunjing".to_string() } else { format!("cunjing.{label}") }
}

/// A broadcast as the `sender,identifier,sent` a correction of it refers to (sent in UTC).
pub fn reference_text(b: &BroadcastRow) -> String {
    let sent = DateTime::from_timestamp_millis(b.created_at).unwrap_or_default().fixed_offset();
    format!("{},{},{}", sender_of(b), b.cap_identifier, format_datetime(&sent))
}

/// The CAP reference to a broadcast, sent in `tz`; an imported alert's own reference came
/// with it (`self:sender,identifier,sent`).
pub fn reference_from(b: &BroadcastRow, tz: &chrono_tz::Tz) -> Reference {
    if let Some(r) = b.cap_references.as_deref().and_then(|r| r.strip_prefix("self:")) {
        let mut parts = r.splitn(3, ',');
        if let (Some(sender), Some(identifier), Some(sent)) = (parts.next(), parts.next(), parts.next()) {
            return Reference { sender: sender.into(), identifier: identifier.into(), sent: sent.into() };
        }
    }
    let sent = DateTime::from_timestamp_millis(b.created_at).unwrap_or_default().with_timezone(tz).fixed_offset();
    Reference { sender: sender_of(b), identifier: b.cap_identifier.clone(), sent: format_datetime(&sent) }
}

/// Broadcast `b` as a CAP alert, times in `tz`: an Alert, an Update of the broadcast it
/// corrects (`original`), or, once cancelled, the Cancel that withdraws it. `areas` are the
/// places it went to (by name, and by outline or circle for `area:` and `near:` targets),
/// `language` the locale of its text.
pub fn alert_of(
    b: &BroadcastRow,
    original: Option<&BroadcastRow>,
    areas: Vec<Area>,
    tz: &chrono_tz::Tz,
    language: &str,
) -> Alert {
    let at = |ms: i64| -> DateTime<FixedOffset> {
        DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(tz).fixed_offset()
    };
    let (urgency, severity) = levels_of(b.severity);
    let mut references = Vec::new();
    let mut msg_type = MsgType::Alert;
    let mut identifier = b.cap_identifier.clone();
    let mut sent = at(b.created_at);
    if let Some(o) = original {
        msg_type = MsgType::Update;
        references.push(reference_from(o, tz));
    }
    if b.status == BroadcastStatus::Cancelled {
        // A cancelled broadcast is exported as the Cancel that withdraws it.
        references = vec![reference_from(b, tz)];
        msg_type = MsgType::Cancel;
        identifier = format!("{identifier}.cancel");
        sent = at(b.finished_at.unwrap_or(b.created_at));
    }
    Alert {
        identifier,
        sender: sender_of(b),
        sent,
        status: b.cap_status,
        msg_type,
        scope: "Public".into(),
        note: None,
        references,
        info: vec![Info {
            language: Some(language.to_string()),
            category: vec![if b.kind == BroadcastKind::Warning { "Security" } else { "Safety" }.to_string()],
            event: b.event.clone(),
            urgency: urgency.into(),
            severity: severity.into(),
            certainty: if b.kind == BroadcastKind::Warning { "Likely" } else { "Observed" }.into(),
            sender_name: Some(b.sender_label.clone()),
            headline: Some(b.event.clone()),
            description: Some(b.text.clone()),
            instruction: None,
            expires: b.expires_at.map(at),
            areas,
        }],
    }
}

impl Alert {
    /// The reference an imported alert keeps of itself (`self:sender,identifier,sent`), which
    /// [`reference_from`] gives back when the broadcast is exported again.
    pub fn own_reference(&self) -> String {
        format!("self:{},{},{}", self.sender, self.identifier, format_datetime(&self.sent))
    }
}

impl Info {
    /// What residents read of this info: the headline, description and instruction, one per
    /// line, blank ones left out.
    pub fn resident_text(&self) -> String {
        [self.headline.as_deref(), self.description.as_deref(), self.instruction.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const APPENDIX_A1: &str = include_str!("../tests/fixtures/cap/cap12-appendix-a1-alert.xml");
    const APPENDIX_A3: &str = include_str!("../tests/fixtures/cap/cap12-appendix-a3-update.xml");

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn chinese_alert() -> Alert {
        Alert {
            identifier: "cunjing-qingshan-2026-0042".to_owned(),
            sender: "cunjing@qingshan.example.cn".to_owned(),
            sent: at("2026-11-23T09:00:00+08:00"),
            status: Status::Actual,
            msg_type: MsgType::Alert,
            scope: "Public".to_owned(),
            note: Some("村警广播 #42".to_owned()),
            references: Vec::new(),
            info: vec![Info {
                language: Some("zh-CN".to_owned()),
                category: vec!["Security".to_owned()],
                event: "治安预警".to_owned(),
                urgency: "Expected".to_owned(),
                severity: "Moderate".to_owned(),
                certainty: "Likely".to_owned(),
                sender_name: Some("青山派出所".to_owned()),
                headline: Some("有人冒充“社区民警”上门收费 & 推销".to_owned()),
                description: Some(
                    "　　凡自称民警、要求转账<任何金额>的，都是诈骗 & 请拨打 110。\n第二行 'quoted' \"too\"".to_owned(),
                ),
                instruction: Some("不要开门；核实身份请致电社区民警。".to_owned()),
                expires: Some(at("2026-11-30T18:00:00+08:00")),
                areas: vec![Area::named("青山村"), Area::named("河湾村 <二组> & 三组")],
            }],
        }
    }

    /// Writes `xml` to a temporary file and checks it with `xmllint` against the official schema.
    fn assert_valid_against_the_xsd(name: &str, xml: &str) {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cap/CAP-v1.2.xsd");
        let file = std::env::temp_dir().join(format!(
            "cunjing-cap-{}-{}-{name}.xml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, xml).unwrap();
        let output = Command::new("xmllint").arg("--noout").arg("--schema").arg(&schema).arg(&file).output();
        let _ = std::fs::remove_file(&file);
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "xmllint is not installed, so CAP output cannot be checked against the XSD: \
                 install libxml2-utils (apt-get install libxml2-utils), as CI does"
            ),
            Err(e) => panic!("cannot run xmllint: {e}"),
        };
        assert!(
            output.status.success(),
            "{name} does not validate against CAP-v1.2.xsd:\n{}\n{xml}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn the_appendix_alert_example_parses_with_its_info_and_area() {
        let alert = Alert::parse(APPENDIX_A1).unwrap();
        assert_eq!(alert.identifier, "43b080713727");
        assert_eq!(alert.sender, "hsas@dhs.gov");
        assert_eq!(alert.sent, at("2003-04-02T14:39:01-05:00"));
        assert_eq!(alert.sent.offset().local_minus_utc(), -5 * 3600);
        assert_eq!(alert.status, Status::Actual);
        assert_eq!(alert.msg_type, MsgType::Alert);
        assert_eq!(alert.scope, "Public");
        assert_eq!(alert.note, None);
        assert!(alert.references.is_empty());
        assert_eq!(alert.info.len(), 1);
        let info = &alert.info[0];
        assert_eq!(info.language, None);
        assert_eq!(info.category, ["Security"]);
        assert_eq!(info.event, "Homeland Security Advisory System Update");
        assert_eq!(
            (info.urgency.as_str(), info.severity.as_str(), info.certainty.as_str()),
            ("Immediate", "Severe", "Likely")
        );
        assert_eq!(info.sender_name.as_deref(), Some("U.S. Government, Department of Homeland Security"));
        assert_eq!(info.headline.as_deref(), Some("Homeland Security Sets Code ORANGE"));
        assert!(info.instruction.as_deref().unwrap().starts_with("A High Condition is declared"));
        assert!(info.description.as_deref().unwrap().ends_with("heightened\n            threat of terrorism."));
        assert_eq!(info.expires, None);
        assert_eq!(info.areas, [Area::named("U.S. nationwide and interests worldwide")]);
    }

    #[test]
    fn the_appendix_update_example_parses_with_its_reference() {
        let alert = Alert::parse(APPENDIX_A3).unwrap();
        assert_eq!(alert.identifier, "TRI13970876.2");
        assert_eq!(alert.sender, "trinet@caltech.edu");
        assert_eq!(alert.sent, at("2003-06-11T20:56:00-07:00"));
        assert_eq!(alert.sent.offset().local_minus_utc(), -7 * 3600);
        assert_eq!(alert.status, Status::Actual);
        assert_eq!(alert.msg_type, MsgType::Update);
        assert_eq!(alert.scope, "Public");
        assert_eq!(
            alert.references,
            [Reference {
                sender: "trinet@caltech.edu".to_owned(),
                identifier: "TRI13970876.1".to_owned(),
                sent: "2003-06-11T20:30:00-07:00".to_owned(),
            }]
        );
        assert_eq!(alert.references_text(), "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00");
        let info = &alert.info[0];
        assert_eq!(info.category, ["Geo"]);
        assert_eq!(info.event, "Earthquake");
        assert_eq!(
            (info.urgency.as_str(), info.severity.as_str(), info.certainty.as_str()),
            ("Past", "Minor", "Observed")
        );
        assert_eq!(info.headline.as_deref(), Some("EQ 3.4 Imperial County CA"));
        assert_eq!(info.areas.len(), 1);
        assert!(info.areas[0].desc.starts_with("1 mi. WSW of Brawley, CA;"));
        assert!(info.areas[0].desc.ends_with("1 mi. N of the Imperial Fault"));
    }

    #[test]
    fn a_chinese_alert_survives_a_round_trip_through_xml() {
        let alert = chinese_alert();
        let xml = alert.to_xml();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{xml}");
        assert!(xml.contains(&format!("<alert xmlns=\"{CAP_NAMESPACE}\">")), "{xml}");
        assert!(xml.contains("<event>治安预警</event>"), "{xml}");
        assert!(xml.contains("转账&lt;任何金额&gt;的，都是诈骗 &amp; 请拨打"), "{xml}");
        assert!(xml.contains("<sent>2026-11-23T09:00:00+08:00</sent>"), "{xml}");
        assert!(xml.contains("<expires>2026-11-30T18:00:00+08:00</expires>"), "{xml}");

        let parsed = Alert::parse(&xml).unwrap();
        assert_eq!(parsed, alert);
        assert_eq!(parsed.sent.offset().local_minus_utc(), 8 * 3600);
        assert_eq!(parsed.info[0].expires.unwrap().offset().local_minus_utc(), 8 * 3600);
    }

    #[test]
    fn written_alerts_updates_and_cancels_validate_against_the_xsd() {
        let alert = chinese_alert();
        assert_valid_against_the_xsd("alert", &alert.to_xml());

        let mut update = chinese_alert();
        update.identifier = "cunjing-qingshan-2026-0043".to_owned();
        update.sent = at("2026-11-23T03:30:00+00:00");
        update.msg_type = MsgType::Update;
        update.references = vec![alert.reference(), Alert::parse(APPENDIX_A3).unwrap().references[0].clone()];
        update.info.push(Info {
            language: Some("en-US".to_owned()),
            expires: None,
            areas: Vec::new(),
            ..alert.info[0].clone()
        });
        let xml = update.to_xml();
        assert!(xml.contains("<sent>2026-11-23T03:30:00-00:00</sent>"), "{xml}");
        assert_valid_against_the_xsd("update", &xml);
        assert_eq!(Alert::parse(&xml).unwrap(), update);

        let cancel = Alert {
            identifier: "cunjing-qingshan-2026-0044".to_owned(),
            msg_type: MsgType::Cancel,
            note: Some("误报，已核实 & 撤销".to_owned()),
            references: vec![alert.reference(), update.reference()],
            info: Vec::new(),
            ..chinese_alert()
        };
        let xml = cancel.to_xml();
        assert_valid_against_the_xsd("cancel", &xml);
        assert_eq!(Alert::parse(&xml).unwrap(), cancel);
    }

    #[test]
    fn the_appendix_examples_themselves_validate_against_the_xsd() {
        // Guards the test helper: a document known to be valid must pass it.
        assert_valid_against_the_xsd("appendix-a1", APPENDIX_A1);
        assert_valid_against_the_xsd("appendix-a3", APPENDIX_A3);
    }

    #[test]
    fn a_wrong_root_element_is_not_an_alert() {
        let err = Alert::parse(&format!("<foo xmlns=\"{CAP_NAMESPACE}\"/>")).unwrap_err();
        assert!(matches!(err, CapError::NotAnAlert { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("the root element is <foo"), "{message}");
        assert!(message.contains(&format!("expected <alert xmlns=\"{CAP_NAMESPACE}\">")), "{message}");
    }

    #[test]
    fn an_alert_without_the_cap_namespace_is_rejected() {
        let without = APPENDIX_A1.replace(" xmlns = \"urn:oasis:names:tc:emergency:cap:1.2\"", "");
        let err = Alert::parse(&without).unwrap_err();
        assert!(matches!(err, CapError::NotAnAlert { .. }), "{err:?}");
        assert!(err.to_string().contains("the root element is <alert> (in no namespace)"), "{err}");

        let cap_1_1 = APPENDIX_A1.replace("cap:1.2", "cap:1.1");
        let err = Alert::parse(&cap_1_1).unwrap_err();
        assert!(err.to_string().contains("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.1\">"), "{err}");
    }

    #[test]
    fn an_alert_without_identifier_names_the_missing_element() {
        let xml = APPENDIX_A1.replace("<identifier>43b080713727</identifier>", "");
        let err = Alert::parse(&xml).unwrap_err();
        assert!(matches!(err, CapError::Missing { element: "identifier", .. }), "{err:?}");
        assert_eq!(err.to_string(), "<alert> has no <identifier>; CAP 1.2 requires it");
    }

    #[test]
    fn a_sent_time_not_in_cap_form_is_rejected() {
        for bad in [
            "2003-04-02 14:39:01-05:00",
            "2003-04-02T19:39:01Z",
            "2003-04-02T14:39:01.5-05:00",
            "2003-02-30T14:39:01-05:00",
        ] {
            let xml = APPENDIX_A1.replace("2003-04-02T14:39:01-05:00", bad);
            let err = Alert::parse(&xml).unwrap_err();
            assert!(matches!(err, CapError::BadDateTime { element: "sent", .. }), "{bad}: {err:?}");
            assert_eq!(
                err.to_string(),
                format!("<sent> \"{bad}\" is not a CAP date-time (like 2026-11-23T09:00:00+08:00)")
            );
        }
    }

    #[test]
    fn a_status_outside_caps_values_is_rejected() {
        let xml = APPENDIX_A1.replace("<status>Actual</status>", "<status>Real</status>");
        let err = Alert::parse(&xml).unwrap_err();
        assert!(matches!(err, CapError::NotAllowed { element: "status", .. }), "{err:?}");
        assert_eq!(err.to_string(), "<status> \"Real\" is not one of Actual, Exercise, System, Test, Draft");
    }

    #[test]
    fn a_malformed_reference_or_document_is_rejected_with_a_reason() {
        let xml = APPENDIX_A3.replace("TRI13970876.1,", "");
        let err = Alert::parse(&xml).unwrap_err();
        assert!(err.to_string().contains("is not \"sender,identifier,sent\": it has 2"), "{err}");

        let err = Alert::parse(&APPENDIX_A1.replace("</alert>", "")).unwrap_err();
        assert_eq!(err.to_string(), "the document ends inside <alert>: close it with </alert>");

        let err = Alert::parse("").unwrap_err();
        assert!(matches!(err, CapError::NoRoot), "{err:?}");

        let with_entity = APPENDIX_A1
            .replace("<?xml version = \"1.0\" encoding = \"UTF-8\"?>", "<!DOCTYPE alert [<!ENTITY x \"y\">]>")
            .replace("<event>", "<event>&x;");
        let err = Alert::parse(&with_entity).unwrap_err();
        assert!(matches!(&err, CapError::UnknownEntity { name } if name == "x"), "{err:?}");
    }

    #[test]
    fn a_prefixed_namespace_entities_and_cdata_are_understood() {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<cap:alert xmlns:cap="{CAP_NAMESPACE}" xmlns:other="urn:example:other">
  <cap:identifier>id-1</cap:identifier>
  <other:identifier>not CAP's, so neither kept nor a repetition</other:identifier>
  <cap:sender>cunjing@example.cn</cap:sender>
  <cap:sent>2026-11-23T09:00:00+08:00</cap:sent>
  <cap:status>Test</cap:status>
  <cap:msgType>Alert</cap:msgType>
  <cap:scope>Public</cap:scope>
  <cap:info>
    <cap:category>Security</cap:category>
    <cap:category>Safety</cap:category>
    <cap:event>&#27979;&#x8BD5;</cap:event>
    <cap:urgency>Unknown</cap:urgency>
    <cap:severity>Unknown</cap:severity>
    <cap:certainty>Unknown</cap:certainty>
    <cap:headline> &#20013;&#x6587; &amp; <![CDATA[<raw>]]> &lt;&gt; </cap:headline>
  </cap:info>
</cap:alert>"#
        );
        let alert = Alert::parse(&xml).unwrap();
        assert_eq!(alert.identifier, "id-1");
        assert_eq!(alert.status, Status::Test);
        assert_eq!(alert.info[0].category, ["Security", "Safety"]);
        assert_eq!(alert.info[0].event, "测试");
        assert_eq!(alert.info[0].headline.as_deref(), Some("中文 & <raw> <>"));
        assert!(alert.info[0].areas.is_empty());
    }

    #[test]
    fn validate_rejects_values_the_schema_forbids() {
        let mut alert = chinese_alert();
        alert.identifier = "two words".to_owned();
        assert!(matches!(alert.validate(), Err(CapError::BadIdentifier { element: "identifier", .. })));

        let mut alert = chinese_alert();
        alert.info[0].category = vec!["Police".to_owned()];
        let err = alert.validate().unwrap_err();
        assert!(err.to_string().starts_with("<category> \"Police\" is not one of Geo, Met"), "{err}");

        let mut alert = chinese_alert();
        alert.info[0].category.clear();
        assert_eq!(alert.validate().unwrap_err().to_string(), "<info> has no <category>; CAP 1.2 requires it");

        let mut alert = chinese_alert();
        alert.info[0].language = Some("zh_CN".to_owned());
        assert!(matches!(alert.validate(), Err(CapError::BadLanguage { .. })));

        let mut alert = chinese_alert();
        alert.info[0].description = Some("bell \u{7}".to_owned());
        assert!(matches!(alert.validate(), Err(CapError::IllegalChar { element: "description", code: 7 })));

        assert!(chinese_alert().validate().is_ok());
    }

    #[test]
    fn an_area_keeps_its_outline_and_circle_through_xml_and_the_xsd() {
        use geo::{LineString, MultiPolygon, Polygon};
        let square = MultiPolygon(vec![Polygon::new(
            LineString::from(vec![(113.7, 34.48), (113.721795, 34.48), (113.721795, 34.498087), (113.7, 34.48)]),
            vec![],
        )]);
        let mut alert = chinese_alert();
        alert.info[0].areas = vec![
            Area { polygons: Area::polygons_of(&square), ..Area::named("和庄村及相邻村（格）") },
            Area { circles: vec![Area::circle(34.485, 113.72125, 3.0)], ..Area::named("位置周边 3 公里") },
        ];
        assert_eq!(
            alert.info[0].areas[0].polygons,
            ["34.480000,113.700000 34.480000,113.721795 34.498087,113.721795 34.480000,113.700000"]
        );
        let xml = alert.to_xml();
        assert!(xml.contains("<circle>34.485,113.72125 3</circle>"), "{xml}");
        assert_valid_against_the_xsd("area-shapes", &xml);
        assert_eq!(Alert::parse(&xml).unwrap(), alert);

        let mut bad = alert.clone();
        bad.info[0].areas[0].polygons = vec!["34.48,113.7 34.49,113.7 34.49,113.71".into()];
        assert!(matches!(bad.validate(), Err(CapError::BadShape { element: "polygon", .. })));
        bad.info[0].areas[0].polygons = vec!["113.7,34.48 113.7,34.49 113.71,34.49 113.7,34.48".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("lat,lon"), "longitude first is refused");
        let mut bad = alert.clone();
        bad.info[0].areas[1].circles = vec!["34.485,113.72125".into()];
        assert!(matches!(bad.validate(), Err(CapError::BadShape { element: "circle", .. })));
    }

    #[test]
    fn format_datetime_writes_seconds_and_a_numeric_offset() {
        assert_eq!(format_datetime(&at("2026-11-23T09:00:00.750+08:00")), "2026-11-23T09:00:00+08:00");
        assert_eq!(format_datetime(&at("2003-06-11T20:30:00-07:00")), "2003-06-11T20:30:00-07:00");
    }

    #[test]
    fn format_datetime_writes_utc_as_minus_zero_never_z() {
        let utc = at("2026-11-23T01:00:00Z");
        assert_eq!(format_datetime(&utc), "2026-11-23T01:00:00-00:00");
        assert_eq!(format_datetime(&chrono::Utc::now().fixed_offset()).chars().last(), Some('0'));
        assert_eq!(parse_datetime("sent", "2026-11-23T01:00:00-00:00").unwrap(), utc);
        assert_eq!(parse_datetime("sent", "2026-11-23T01:00:00+00:00").unwrap(), utc);
    }
}
