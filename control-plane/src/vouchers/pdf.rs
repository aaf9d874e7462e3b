//! The printable voucher sheet: an A4 PDF with every voucher twice, side by side.
//!
//! The left copy (the guest's) carries the code and how to use it, in English and Russian;
//! it is cut off and handed to the guest. The right copy (the operator's) carries the code,
//! when it was generated, its kind and duration, the account, and a blank line for whom it
//! was issued to (to be kept with the guest's passport details). A voucher's pair is one
//! row and never straddles a page; dashed cut lines run around every row and between the
//! two copies.
//!
//! Text is set in DejaVu Sans (regular and bold, embedded with `include_bytes!` and subset
//! to the glyphs the sheet uses, with a ToUnicode map so the text can be searched and
//! copied). The PDF is written with `pdf-writer`; the fonts are subset with `subsetter`.

use std::collections::BTreeMap;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use subsetter::GlyphRemapper;

/// One voucher to print.
pub struct Card<'a> {
    /// 12 ASCII digits, e.g. "100123456789".
    pub code: &'a str,
    /// Multi-use (true) or single-use (false).
    pub multi: bool,
    /// 1..=30 days from activation; `None` = unlimited.
    pub days: Option<u32>,
    /// Generation time, ms since the epoch (UTC).
    pub created_at_ms: i64,
}

/// What the sheet says around the cards.
pub struct Sheet<'a> {
    /// The operator's account name, printed small in the operator copy.
    pub account: &'a str,
    /// Wi-Fi network names the vouchers work on (for the guest's instructions); may be empty.
    pub networks: &'a [String],
    /// Where the guest types the code; `None` = "the Wi-Fi login page".
    pub portal_url: Option<&'a str>,
}

/// How the printed code is written for people: "1001 2345 6789" (groups of 4 separated by
/// one space).
pub fn grouped(code: &str) -> String {
    let mut out = String::with_capacity(code.len() + code.len() / 4);
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Renders an A4 PDF: every card twice (guest copy left, operator copy right), as many
/// rows per page as fit: 6 with the usual texts (200 cards: 34 pages), 5 when long network
/// names or a long portal URL wrap the instructions (their type then shrinks a little
/// first). An empty `cards` gives one page saying there are no unused vouchers. Never
/// panics.
pub fn render(sheet: &Sheet, cards: &[Card]) -> Result<Vec<u8>, String> {
    let mut fonts = Fonts::load()?;
    let texts = Texts::new(sheet);
    let guests: Vec<GuestText> = cards.iter().map(|c| texts.guest(c)).collect();
    let layout = Layout::new(&mut fonts, &texts, &guests);

    let pages: Vec<&[GuestText]> = if guests.is_empty() { vec![&[]] } else { guests.chunks(layout.rows.max(1)).collect() };
    let total = pages.len();
    let mut streams = Vec::with_capacity(total);
    let mut first = 0;
    for (i, page) in pages.iter().enumerate() {
        let mut c = Canvas { content: Content::new(), fonts: &mut fonts };
        c.header(i + 1, total, !cards.is_empty());
        if cards.is_empty() {
            c.nothing_to_print();
        } else {
            for (row, guest) in page.iter().enumerate() {
                let card = cards.get(first + row).ok_or("card index out of range")?;
                c.row(&layout, &texts, sheet, card, guest, row);
            }
            c.cut_lines(&layout, page.len());
        }
        first += page.len();
        streams.push(c.content.finish().into_vec());
    }
    write_pdf(&mut fonts, &streams)
}

// ---------------------------------------------------------------------------------------
// Page geometry, in PostScript points (1/72 inch), y measured DOWN from the page's top.

const PAGE_W: f32 = 595.276; // A4: 210 mm
const PAGE_H: f32 = 841.89; // A4: 297 mm
const MARGIN_X: f32 = 34.0; // 12 mm: inside every office printer's printable area
const MARGIN_TOP: f32 = 30.0;
const MARGIN_BOTTOM: f32 = 30.0;
/// From the top margin to the first cut line: title and the cutting instructions.
const HEADER_H: f32 = 44.0;
/// The guest's share of the width between the margins.
const GUEST_SHARE: f32 = 0.6;
const PAD_X: f32 = 12.0;
const PAD_TOP: f32 = 11.0;
const PAD_BOTTOM: f32 = 10.0;
/// From the label's baseline to the top of the code's em box, and from the code's
/// baseline to the top of the first line below it.
const CODE_ABOVE: f32 = 6.0;
const CODE_BELOW: f32 = 7.0;
const MAX_ROWS: usize = 8;

// Type sizes.
const LABEL_SIZE: f32 = 6.5;
/// Letter spacing of the small capitals labels.
const LABEL_SPACING: f32 = 0.6;
const GUEST_CODE_SIZE: f32 = 19.0;
const OPERATOR_CODE_SIZE: f32 = 15.0;
/// The guest's instructions: the largest of these sizes that gets the most rows on a page
/// (long network names or portal URLs wrap to more lines).
const BODY_SIZES: [f32; 3] = [7.8, 7.4, 7.0];
const BODY_LEAD: f32 = 1.17; // times the size
/// The size of one-off lines such as the empty sheet's hint.
const BODY_SIZE: f32 = BODY_SIZES[0];
const SMALL_SIZE: f32 = 7.0;
const SMALL_LEAD: f32 = 9.0;
/// Space between two bilingual paragraphs of the guest copy.
const PARA_GAP: f32 = 3.5;
/// Height of one handwriting line in the operator copy.
const WRITE_LINE: f32 = 17.0;
/// At most this many lines per language for one instruction (a long network list or URL
/// is cut with "…").
const MAX_PARA_LINES: usize = 3;

const GRAY_TEXT: f32 = 0.32;
const GRAY_LABEL: f32 = 0.45;
const GRAY_RULE: f32 = 0.55;
const GRAY_CODE_BG: f32 = 0.93;

/// A text style: typeface, size in points, gray level (0 = black).
#[derive(Clone, Copy)]
struct St(Face, f32, f32);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
}

/// Where the rows go, worked out once for the whole sheet.
struct Layout {
    rows: usize,
    /// The size of the guest's instructions.
    body: f32,
    row_h: f32,
    top: f32,
    x0: f32,
    x_split: f32,
    x1: f32,
}

impl Layout {
    fn new(fonts: &mut Fonts, texts: &Texts, guests: &[GuestText]) -> Layout {
        let x0 = MARGIN_X;
        let x1 = PAGE_W - MARGIN_X;
        let x_split = x0 + ((x1 - x0) * GUEST_SHARE).round();
        let guest_w = x_split - x0 - 2.0 * PAD_X;
        let avail = PAGE_H - MARGIN_TOP - HEADER_H - MARGIN_BOTTOM;
        let rows_at = BODY_SIZES.map(|size| {
            let need = guests.iter().map(|g| guest_height(fonts, texts, g, guest_w, size)).fold(operator_height(), f32::max);
            rows_for(avail, need)
        });
        let rows = rows_at.iter().copied().max().unwrap_or(1);
        let body = BODY_SIZES.iter().zip(rows_at).find(|&(_, r)| r == rows).map_or(BODY_SIZE, |(&size, _)| size);
        Layout { rows, body, row_h: avail / rows as f32, top: MARGIN_TOP + HEADER_H, x0, x_split, x1 }
    }

    fn guest_w(&self) -> f32 {
        self.x_split - self.x0 - 2.0 * PAD_X
    }

    fn operator_w(&self) -> f32 {
        self.x1 - self.x_split - 2.0 * PAD_X
    }
}

/// How many rows of height `need` fit in `avail` (at least 1, at most [`MAX_ROWS`]).
fn rows_for(avail: f32, need: f32) -> usize {
    let fit = if need > 0.0 { (avail / need).floor() } else { MAX_ROWS as f32 };
    (fit.max(1.0) as usize).min(MAX_ROWS)
}

fn guest_height(fonts: &mut Fonts, texts: &Texts, g: &GuestText, width: f32, size: f32) -> f32 {
    let lines: usize = guest_paragraphs(texts, g)
        .iter()
        .map(|p| {
            let w = width - p.indent(fonts, size);
            wrap(fonts, Face::Regular, size, p.en, w).len() + wrap(fonts, Face::Regular, size, p.ru, w).len()
        })
        .sum();
    PAD_TOP + GUEST_CODE_SIZE + CODE_BELOW + lines as f32 * size * BODY_LEAD + 2.0 * PARA_GAP + PAD_BOTTOM
}

fn operator_height() -> f32 {
    PAD_TOP + LABEL_SIZE + CODE_ABOVE + OPERATOR_CODE_SIZE + CODE_BELOW + 3.0 * SMALL_LEAD + 4.0 + 2.0 * WRITE_LINE + PAD_BOTTOM
}

// ---------------------------------------------------------------------------------------
// The words.

/// The sheet-wide texts (the same on every card).
struct Texts {
    connect_en: String,
    connect_ru: String,
    open_en: String,
    open_ru: String,
}

/// What differs from card to card on the guest copy.
struct GuestText {
    code: String,
    valid_en: String,
    valid_ru: String,
}

/// One instruction, in both languages, with an optional number ("1.") hung in the margin.
struct Paragraph<'a> {
    number: &'a str,
    en: &'a str,
    ru: &'a str,
}

impl Paragraph<'_> {
    fn indent(&self, fonts: &mut Fonts, size: f32) -> f32 {
        if self.number.is_empty() {
            0.0
        } else {
            fonts.width(Face::Bold, size, "0. ")
        }
    }
}

fn guest_paragraphs<'a>(texts: &'a Texts, g: &'a GuestText) -> [Paragraph<'a>; 3] {
    [
        Paragraph { number: "1.", en: &texts.connect_en, ru: &texts.connect_ru },
        Paragraph { number: "2.", en: &texts.open_en, ru: &texts.open_ru },
        Paragraph { number: "", en: &g.valid_en, ru: &g.valid_ru },
    ]
}

impl Texts {
    fn new(sheet: &Sheet) -> Texts {
        let names: Vec<String> = sheet.networks.iter().map(|n| n.trim()).filter(|n| !n.is_empty()).map(|n| format!("«{n}»")).collect();
        let (connect_en, connect_ru) = if names.is_empty() {
            ("Connect to the Wi-Fi network".to_owned(), "Подключитесь к сети Wi-Fi".to_owned())
        } else {
            (format!("Connect to Wi-Fi {}", list(&names, "or")), format!("Подключитесь к Wi-Fi {}", list(&names, "или")))
        };
        let (open_en, open_ru) = match sheet.portal_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => (format!("Open any web page or {url} and enter the code"), format!("Откройте любой сайт или {url} и введите код")),
            None => (
                "Open any web page and enter the code on the Wi-Fi login page".to_owned(),
                "Откройте любой сайт и введите код на странице входа в Wi-Fi".to_owned(),
            ),
        };
        Texts { connect_en, connect_ru, open_en, open_ru }
    }

    fn guest(&self, card: &Card) -> GuestText {
        let (dur_en, dur_ru) = match card.days {
            Some(n) => (
                format!("Valid {n} {} from activation", if n == 1 { "day" } else { "days" }),
                format!("Действует {n} {} с момента активации", ru_days(n)),
            ),
            None => ("Valid with no time limit".to_owned(), "Действует бессрочно".to_owned()),
        };
        let (dev_en, dev_ru) = if card.multi {
            ("any number of devices", "любое число устройств")
        } else {
            ("one device", "одно устройство")
        };
        GuestText { code: grouped(card.code), valid_en: format!("{dur_en} · {dev_en}"), valid_ru: format!("{dur_ru} · {dev_ru}") }
    }
}

/// "«a»", "«a» or «b»", "«a», «b» or «c»".
fn list(names: &[String], or: &str) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {or} {last}", init.join(", ")),
    }
}

/// The Russian plural of "day" for `n`.
fn ru_days(n: u32) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=14) => "дней",
        (1, _) => "день",
        (2..=4, _) => "дня",
        _ => "дней",
    }
}

fn kind_line(card: &Card) -> String {
    let (kind_en, kind_ru) = if card.multi { ("Multi-use", "Многоразовый") } else { ("Single-use", "Одноразовый") };
    let (dur_en, dur_ru) = match card.days {
        Some(n) => (format!("{n} {}", if n == 1 { "day" } else { "days" }), format!("{n} {}", ru_days(n))),
        None => ("unlimited".to_owned(), "бессрочный".to_owned()),
    };
    format!("{kind_en}, {dur_en} / {kind_ru}, {dur_ru}")
}

/// "2026-12-03 14:05 UTC" for a time in ms since the epoch.
fn utc_minute(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::tokens::keys::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", sod / 3600, sod % 3600 / 60)
}

// ---------------------------------------------------------------------------------------
// Drawing.

struct Canvas<'f> {
    content: Content,
    fonts: &'f mut Fonts,
}

impl Canvas<'_> {
    /// Writes `text` with its baseline's left end at (`x`, `y`), y measured from the top.
    fn text(&mut self, St(face, size, gray): St, x: f32, y: f32, text: &str) {
        let encoded = self.fonts.encode(face, text);
        self.content
            .set_fill_gray(gray)
            .begin_text()
            .set_font(Name(self.fonts.get(face).resource), size)
            .set_text_matrix([1.0, 0.0, 0.0, 1.0, x, PAGE_H - y])
            .show(Str(&encoded))
            .end_text();
    }

    /// Like [`Canvas::text`], with extra space between the characters.
    fn spaced(&mut self, style: St, x: f32, y: f32, text: &str, sp: f32) {
        self.content.set_char_spacing(sp);
        self.text(style, x, y, text);
        self.content.set_char_spacing(0.0);
    }

    fn text_right(&mut self, style: St, x_right: f32, y: f32, text: &str) {
        let w = self.fonts.width(style.0, style.1, text);
        self.text(style, x_right - w, y, text);
    }

    fn text_center(&mut self, style: St, y: f32, text: &str) {
        let w = self.fonts.width(style.0, style.1, text);
        self.text(style, (PAGE_W - w) / 2.0, y, text);
    }

    fn fill_rect(&mut self, gray: f32, x: f32, y_top: f32, w: f32, h: f32) {
        self.content.set_fill_gray(gray).rect(x, PAGE_H - y_top - h, w, h).fill_nonzero();
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32) {
        self.content.move_to(x1, PAGE_H - y1).line_to(x2, PAGE_H - y2).stroke();
    }

    fn header(&mut self, page: usize, pages: usize, cutting: bool) {
        let x0 = MARGIN_X;
        let x1 = PAGE_W - MARGIN_X;
        let y = MARGIN_TOP + 11.0;
        self.text(St(Face::Bold, 12.0, 0.0), x0, y, "Wi-Fi vouchers · Ваучеры Wi-Fi");
        let pg = format!("Page {page} of {pages} · Стр. {page} из {pages}");
        self.text_right(St(Face::Regular, SMALL_SIZE, GRAY_LABEL), x1, y, &pg);
        if !cutting {
            return;
        }
        let scissors = "✂";
        let sw = self.fonts.width(Face::Regular, 9.0, scissors) + 4.0;
        self.text(St(Face::Regular, 9.0, GRAY_LABEL), x0, y + 15.0, scissors);
        let how = [
            "Cut along the dashed lines. Hand the left part to the guest; \
             keep the right part with the guest's passport details.",
            "Разрежьте по пунктиру. Левую часть отдайте гостю, \
             правую храните вместе с паспортными данными гостя.",
        ];
        for (i, line) in how.iter().enumerate() {
            let ly = y + 14.5 + i as f32 * SMALL_LEAD;
            self.text(St(Face::Regular, SMALL_SIZE, GRAY_TEXT), x0 + sw, ly, line);
        }
    }

    fn nothing_to_print(&mut self) {
        let y = MARGIN_TOP + HEADER_H + 160.0;
        self.text_center(St(Face::Bold, 15.0, 0.0), y, "No unused vouchers");
        self.text_center(St(Face::Bold, 15.0, GRAY_TEXT), y + 22.0, "Неиспользованных ваучеров нет");
        let hint = "Generate new vouchers, then print again. · \
                    Создайте новые ваучеры и распечатайте снова.";
        self.text_center(St(Face::Regular, BODY_SIZE, GRAY_LABEL), y + 44.0, hint);
    }

    fn row(&mut self, l: &Layout, texts: &Texts, sheet: &Sheet, card: &Card, guest: &GuestText, row: usize) {
        let top = l.top + row as f32 * l.row_h;
        self.guest_copy(l, texts, guest, top);
        self.operator_copy(l, sheet, card, &guest.code, top);
    }

    fn guest_copy(&mut self, l: &Layout, texts: &Texts, g: &GuestText, top: f32) {
        let x = l.x0 + PAD_X;
        let w = l.guest_w();
        let (size, lead) = (l.body, l.body * BODY_LEAD);
        let mut y = top + PAD_TOP + GUEST_CODE_SIZE;
        let band_end = self.code(x, y, GUEST_CODE_SIZE, w, &g.code);
        // "Wi-Fi voucher" in both languages, small, right of the code (if there is room).
        let label = St(Face::Bold, LABEL_SIZE, GRAY_LABEL);
        let lines = ["WI-FI VOUCHER", "ВАУЧЕР WI-FI"];
        let widest = lines
            .iter()
            .map(|t| self.fonts.width(Face::Bold, LABEL_SIZE, t) + LABEL_SPACING * t.chars().count() as f32)
            .fold(0.0_f32, f32::max);
        if band_end + 8.0 + widest <= x + w {
            for (i, t) in lines.iter().enumerate() {
                let tw = self.fonts.width(Face::Bold, LABEL_SIZE, t) + LABEL_SPACING * t.chars().count() as f32;
                let ty = y - GUEST_CODE_SIZE * 0.37 + i as f32 * 8.5;
                self.spaced(label, x + w - tw, ty, t, LABEL_SPACING);
            }
        }
        // A row taller than this copy needs spreads the spare room over its three gaps.
        let spare = l.row_h - guest_height(self.fonts, texts, g, w, size);
        let extra = (spare / 3.0).clamp(0.0, 5.0);
        y += CODE_BELOW + extra;
        for (i, p) in guest_paragraphs(texts, g).iter().enumerate() {
            if i > 0 {
                y += PARA_GAP + extra;
            }
            let indent = p.indent(self.fonts, size);
            if !p.number.is_empty() {
                self.text(St(Face::Bold, size, 0.0), x, y + lead, p.number);
            }
            for (text, gray) in [(p.en, 0.0), (p.ru, GRAY_TEXT)] {
                for line in wrap(self.fonts, Face::Regular, size, text, w - indent) {
                    y += lead;
                    self.text(St(Face::Regular, size, gray), x + indent, y, &line);
                }
            }
        }
    }

    fn operator_copy(&mut self, l: &Layout, sheet: &Sheet, card: &Card, code: &str, top: f32) {
        let x = l.x_split + PAD_X;
        let w = l.operator_w();
        let mut y = top + PAD_TOP + LABEL_SIZE;
        self.spaced(St(Face::Bold, LABEL_SIZE, GRAY_LABEL), x, y, "OPERATOR COPY · КОРЕШОК", LABEL_SPACING);
        y += CODE_ABOVE + OPERATOR_CODE_SIZE;
        self.code(x, y, OPERATOR_CODE_SIZE, w, code);
        y += CODE_BELOW;
        let account = format!("Account / Аккаунт: {}", sheet.account);
        let lines = [format!("Generated / Создан: {}", utc_minute(card.created_at_ms)), kind_line(card), account];
        for line in &lines {
            y += SMALL_LEAD;
            let fitted = fit(self.fonts, Face::Regular, SMALL_SIZE, line, w);
            self.text(St(Face::Regular, SMALL_SIZE, GRAY_TEXT), x, y, &fitted);
        }
        // The handwriting lines sit at the bottom of the row, whatever its height.
        let bottom = top + l.row_h - PAD_BOTTOM - 2.0;
        let label = "Issued to / Выдан:";
        let y1 = bottom - WRITE_LINE;
        self.text(St(Face::Bold, SMALL_SIZE, 0.0), x, y1, label);
        let lw = self.fonts.width(Face::Bold, SMALL_SIZE, label) + 4.0;
        self.content.set_line_width(0.5).set_stroke_gray(0.35).set_dash_pattern([], 0.0);
        self.line(x + lw, y1 + 1.0, x + w, y1 + 1.0);
        self.line(x, bottom + 1.0, x + w, bottom + 1.0);
    }

    /// The code, large and bold on a light band whose left edge is at `x`; returns where
    /// the band ends on the right.
    fn code(&mut self, x: f32, baseline: f32, size: f32, max_w: f32, code: &str) -> f32 {
        let n = code.chars().count().saturating_sub(1);
        // Text, letter spacing and the band's padding all scale with the size.
        let natural = self.fonts.width(Face::Bold, size, code) + size * (0.04 * n as f32 + 0.5);
        // A code longer than the usual 12 digits shrinks to fit its copy.
        let size = if natural > max_w { size * max_w / natural } else { size };
        let spacing = size * 0.04;
        let w = self.fonts.width(Face::Bold, size, code) + spacing * n as f32;
        let pad = size * 0.25;
        let digits = size * 0.73; // DejaVu's figures are as tall as its capitals
        self.fill_rect(GRAY_CODE_BG, x, baseline - digits - pad, w + 2.0 * pad, digits + 2.0 * pad);
        self.spaced(St(Face::Bold, size, 0.0), x + pad, baseline, code, spacing);
        x + w + 2.0 * pad
    }

    /// Dashed cut lines: above and below every row, down the sides and between the copies.
    fn cut_lines(&mut self, l: &Layout, rows: usize) {
        let top = l.top;
        let bottom = l.top + rows as f32 * l.row_h;
        self.content.set_line_width(0.5).set_stroke_gray(GRAY_RULE).set_dash_pattern([4.0, 3.0], 0.0);
        for r in 0..=rows {
            let y = top + r as f32 * l.row_h;
            self.line(l.x0 - 10.0, y, l.x1 + 10.0, y);
        }
        for x in [l.x0, l.x_split, l.x1] {
            self.line(x, top - 8.0, x, bottom + 8.0);
        }
        self.content.set_dash_pattern([], 0.0);
    }
}

/// Splits `text` into lines no wider than `width` (at word breaks; a word longer than a
/// line, such as a URL, is broken anywhere). More than [`MAX_PARA_LINES`] lines are cut,
/// the last ending in "…".
fn wrap(fonts: &mut Fonts, face: Face, size: f32, text: &str, width: f32) -> Vec<String> {
    let space = fonts.width(face, size, " ");
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_w = 0.0;
    for word in text.split_whitespace() {
        if lines.len() > MAX_PARA_LINES {
            break;
        }
        let word_w = fonts.width(face, size, word);
        if !cur.is_empty() && cur_w + space + word_w <= width {
            cur.push(' ');
            cur.push_str(word);
            cur_w += space + word_w;
            continue;
        }
        if !cur.is_empty() {
            lines.push(std::mem::take(&mut cur));
            cur_w = 0.0;
        }
        if word_w <= width {
            cur.push_str(word);
            cur_w = word_w;
            continue;
        }
        // A word wider than a line: break it anywhere.
        for c in word.chars() {
            let w = fonts.char_width(face, size, c);
            if !cur.is_empty() && cur_w + w > width {
                lines.push(std::mem::take(&mut cur));
                cur_w = 0.0;
                if lines.len() > MAX_PARA_LINES {
                    break;
                }
            }
            cur.push(c);
            cur_w += w;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    if lines.len() > MAX_PARA_LINES {
        lines.truncate(MAX_PARA_LINES);
        if let Some(last) = lines.last_mut() {
            last.push('…');
            *last = fit(fonts, face, size, last, width);
        }
    }
    lines
}

/// `text`, cut short with "…" if it is wider than `width`.
fn fit(fonts: &mut Fonts, face: Face, size: f32, text: &str, width: f32) -> String {
    if fonts.width(face, size, text) <= width {
        return text.to_owned();
    }
    let budget = width - fonts.width(face, size, "…");
    let mut out = String::new();
    let mut w = 0.0;
    for c in text.chars() {
        w += fonts.char_width(face, size, c);
        if w > budget {
            break;
        }
        out.push(c);
    }
    let mut out = out.trim_end().trim_end_matches('…').to_owned();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------------------
// Fonts: parsed once per render, subset to the glyphs used, embedded as CID fonts.

const SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SANS_BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

struct Font {
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    /// The PostScript name, e.g. "DejaVuSans".
    name: &'static str,
    /// The name under the page resources, e.g. "F1".
    resource: &'static [u8],
    /// Units per em, as f32.
    upem: f32,
    /// Old glyph id -> new glyph id (= CID) of the subset.
    remapper: GlyphRemapper,
    /// New glyph id -> the character it shows, for the ToUnicode map.
    unicode: BTreeMap<u16, char>,
    /// Char -> (old glyph id, advance in font units).
    cache: BTreeMap<char, (u16, u16)>,
}

impl Font {
    fn load(data: &'static [u8], name: &'static str, resource: &'static [u8]) -> Result<Font, String> {
        let face = ttf_parser::Face::parse(data, 0).map_err(|e| format!("font {name}: {e}"))?;
        let upem = f32::from(face.units_per_em());
        Ok(Font { data, face, name, resource, upem, remapper: GlyphRemapper::new(), unicode: BTreeMap::new(), cache: BTreeMap::new() })
    }

    fn glyph(&mut self, c: char) -> (u16, u16) {
        if let Some(&g) = self.cache.get(&c) {
            return g;
        }
        let gid = self.face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0));
        let adv = self.face.glyph_hor_advance(gid).unwrap_or(0);
        self.cache.insert(c, (gid.0, adv));
        (gid.0, adv)
    }

    fn width(&mut self, size: f32, text: &str) -> f32 {
        let units: u64 = text.chars().map(|c| u64::from(self.glyph(c).1)).sum();
        units as f32 * size / self.upem
    }

    /// The text as 2-byte CIDs (Identity-H) of the subset, remembering the glyphs used.
    fn encode(&mut self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let (old, _) = self.glyph(c);
            let new = self.remapper.remap(old);
            if old != 0 {
                self.unicode.entry(new).or_insert(c);
            }
            out.extend_from_slice(&new.to_be_bytes());
        }
        out
    }

    fn scaled(&self, units: i16) -> f32 {
        f32::from(units) * 1000.0 / self.upem
    }
}

struct Fonts {
    regular: Font,
    bold: Font,
}

impl Fonts {
    fn load() -> Result<Fonts, String> {
        Ok(Fonts { regular: Font::load(SANS, "DejaVuSans", b"F1")?, bold: Font::load(SANS_BOLD, "DejaVuSans-Bold", b"F2")? })
    }

    fn get(&self, face: Face) -> &Font {
        match face {
            Face::Regular => &self.regular,
            Face::Bold => &self.bold,
        }
    }

    fn get_mut(&mut self, face: Face) -> &mut Font {
        match face {
            Face::Regular => &mut self.regular,
            Face::Bold => &mut self.bold,
        }
    }

    fn width(&mut self, face: Face, size: f32, text: &str) -> f32 {
        self.get_mut(face).width(size, text)
    }

    fn char_width(&mut self, face: Face, size: f32, c: char) -> f32 {
        let font = self.get_mut(face);
        f32::from(font.glyph(c).1) * size / font.upem
    }

    fn encode(&mut self, face: Face, text: &str) -> Vec<u8> {
        self.get_mut(face).encode(text)
    }
}

/// Hands out consecutive object ids.
struct Ids(Ref);

impl Ids {
    fn next(&mut self) -> Ref {
        self.0.bump()
    }
}

fn write_pdf(fonts: &mut Fonts, streams: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut ids = Ids(Ref::new(1));
    let catalog = ids.next();
    let tree = ids.next();
    let info = ids.next();
    let regular = ids.next();
    let bold = ids.next();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.document_info(info).title(TextStr("Wi-Fi vouchers")).producer(TextStr("tokengate"));

    let mut page_ids = Vec::with_capacity(streams.len());
    for stream in streams {
        let page = ids.next();
        let content = ids.next();
        page_ids.push(page);
        let mut p = pdf.page(page);
        p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H)).parent(tree).contents(content);
        p.resources().fonts().pair(Name(fonts.regular.resource), regular).pair(Name(fonts.bold.resource), bold);
        p.finish();
        pdf.stream(content, &deflate(stream)).filter(Filter::FlateDecode);
    }
    let count = i32::try_from(page_ids.len()).map_err(|_| "too many pages".to_owned())?;
    pdf.pages(tree).kids(page_ids).count(count);

    write_font(&mut pdf, &mut ids, &fonts.regular, regular)?;
    write_font(&mut pdf, &mut ids, &fonts.bold, bold)?;
    Ok(pdf.finish())
}

/// Writes `font` as a Type 0 font (Identity-H) over a CIDFontType2 subset of its glyphs.
fn write_font(pdf: &mut Pdf, ids: &mut Ids, font: &Font, type0: Ref) -> Result<(), String> {
    let cid = ids.next();
    let descriptor = ids.next();
    let file = ids.next();
    let cmap_id = ids.next();
    let system = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };

    let subset = subsetter::subset(font.data, 0, &font.remapper).map_err(|e| format!("subsetting font {}: {e}", font.name))?;
    // A subset's name carries a six-letter tag that names its glyph set.
    let tag = subset_tag(font.remapper.remapped_gids());
    let base = format!("{tag}+{}", font.name);
    let base = Name(base.as_bytes());

    pdf.type0_font(type0).base_font(base).encoding_predefined(Name(b"Identity-H")).descendant_font(cid).to_unicode(cmap_id);

    let widths: Vec<f32> = font
        .remapper
        .remapped_gids()
        .map(|old| {
            let adv = font.face.glyph_hor_advance(ttf_parser::GlyphId(old)).unwrap_or(0);
            f32::from(adv) * 1000.0 / font.upem
        })
        .collect();
    let mut cid_font = pdf.cid_font(cid);
    cid_font
        .subtype(CidFontType::Type2)
        .base_font(base)
        .system_info(system)
        .font_descriptor(descriptor)
        .default_width(0.0)
        .cid_to_gid_map_predefined(Name(b"Identity"));
    cid_font.widths().consecutive(0, widths);
    cid_font.finish();

    let bbox = font.face.global_bounding_box();
    let cap = font.face.capital_height().unwrap_or(font.face.ascender());
    pdf.font_descriptor(descriptor)
        .name(base)
        .flags(FontFlags::SYMBOLIC)
        .bbox(Rect::new(font.scaled(bbox.x_min), font.scaled(bbox.y_min), font.scaled(bbox.x_max), font.scaled(bbox.y_max)))
        .italic_angle(0.0)
        .ascent(font.scaled(font.face.ascender()))
        .descent(font.scaled(font.face.descender()))
        .cap_height(font.scaled(cap))
        .stem_v(if font.face.is_bold() { 120.0 } else { 80.0 })
        .font_file2(file);
    pdf.stream(file, &deflate(&subset)).filter(Filter::FlateDecode);

    let mut cmap = UnicodeCmap::new(Name(b"Custom"), system);
    for (&glyph, &c) in &font.unicode {
        cmap.pair(glyph, c);
    }
    let cmap = deflate(&cmap.finish());
    let mut stream = pdf.cmap(cmap_id, &cmap);
    stream.name(Name(b"Custom")).system_info(system);
    stream.filter(Filter::FlateDecode);
    stream.finish();
    Ok(())
}

/// zlib-compressed `data`, for a stream with `/Filter /FlateDecode`.
fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// Six capital letters derived from the glyph set (the PDF subset-name convention).
fn subset_tag(glyphs: impl Iterator<Item = u16>) -> String {
    // FNV-1a over the glyph ids: deterministic, so the same sheet gives the same bytes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for g in glyphs {
        for b in g.to_be_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (0..6).map(|i| char::from(b'A' + ((h >> (i * 8)) % 26) as u8)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Instant;

    /// `target/voucher-pdf/NAME/` of the workspace, emptied.
    fn out_dir(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/voucher-pdf").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs a poppler tool; FAILS (never skips) when it is not installed.
    fn poppler(tool: &str, args: &[&str]) -> String {
        let out = match Command::new(tool).args(args).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{tool} is not installed; these tests read the PDF back with poppler: \
                 apt-get install poppler-utils"
            ),
            Err(e) => panic!("running {tool}: {e}"),
        };
        assert!(out.status.success(), "{tool} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn text_of(pdf: &Path, page: Option<usize>) -> String {
        let pdf = pdf.to_str().unwrap();
        match page {
            None => poppler("pdftotext", &["-layout", pdf, "-"]),
            Some(n) => {
                let n = n.to_string();
                poppler("pdftotext", &["-layout", "-f", &n, "-l", &n, pdf, "-"])
            }
        }
    }

    /// Renders every page at 50 dpi; returns how many PNGs came out.
    fn png_pages(pdf: &Path, dir: &Path) -> usize {
        let prefix = dir.join("page");
        poppler("pdftoppm", &["-r", "50", "-png", pdf.to_str().unwrap(), prefix.to_str().unwrap()]);
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name().into_string().unwrap();
                name.starts_with("page") && name.ends_with(".png")
            })
            .count()
    }

    /// `n` distinct random-looking 12-digit codes (a fixed xorshift sequence).
    fn codes(n: usize) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::new();
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let code = format!("{}", 100_000_000_000 + x % 900_000_000_000);
            if seen.insert(code.clone()) {
                out.push(code);
            }
        }
        out
    }

    fn networks() -> Vec<String> {
        vec!["Hotel Guest".to_owned(), "Hotel Guest 5G".to_owned()]
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn grouped_splits_into_fours() {
        assert_eq!(grouped("100123456789"), "1001 2345 6789");
        assert_eq!(grouped("1234"), "1234");
        assert_eq!(grouped("12345"), "1234 5");
        assert_eq!(grouped(""), "");
    }

    #[test]
    fn dates_are_utc_minutes() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(1_796_306_759_000), "2026-12-03 14:05 UTC");
        assert_eq!(utc_minute(951_868_740_000), "2000-02-29 23:59 UTC");
        assert_eq!(utc_minute(-1), "1969-12-31 23:59 UTC");
        // Nonsense times still format (and do not overflow).
        let _ = utc_minute(i64::MIN);
        let _ = utc_minute(i64::MAX);
    }

    #[test]
    fn russian_day_plurals() {
        let got: Vec<_> = [1, 2, 4, 5, 11, 12, 14, 20, 21, 22, 25, 30].map(ru_days).into();
        assert_eq!(got, ["день", "дня", "дня", "дней", "дней", "дней", "дней", "дней", "день", "дня", "дней", "дней"]);
    }

    #[test]
    fn rows_always_cover_the_cards() {
        let avail = PAGE_H - MARGIN_TOP - HEADER_H - MARGIN_BOTTOM;
        for need in [0.0, 1.0, 90.0, 118.0, 200.0, 5000.0] {
            let rows = rows_for(avail, need);
            assert!((1..=MAX_ROWS).contains(&rows));
            if need <= avail {
                assert!(rows as f32 * need <= avail + 0.01, "rows {rows} of {need} overflow");
            }
            for cards in [1usize, 6, 7, 199, 200, 1000] {
                let pages = cards.div_ceil(rows);
                assert!(rows * pages >= cards);
            }
        }
    }

    #[test]
    fn two_hundred_cards_each_twice_never_split() {
        let codes = codes(201);
        let (used, codes) = codes.split_last().unwrap();
        let cards: Vec<Card> = codes
            .iter()
            .enumerate()
            .map(|(i, code)| Card {
                code,
                multi: i % 3 == 0,
                days: if i % 5 == 0 { None } else { Some(1 + (i as u32 * 7) % 30) },
                created_at_ms: 1_796_306_759_000 + i as i64 * 61_000,
            })
            .collect();
        let nets = networks();
        let sheet = Sheet { account: "Grand Hotel Moscow", networks: &nets, portal_url: Some("http://portal.example/portal") };

        let started = Instant::now();
        let bytes = render(&sheet, &cards).unwrap();
        let took = started.elapsed();

        let mut fonts = Fonts::load().unwrap();
        let texts = Texts::new(&sheet);
        let guests: Vec<_> = cards.iter().map(|c| texts.guest(c)).collect();
        let rows = Layout::new(&mut fonts, &texts, &guests).rows;
        assert_eq!(rows, 6, "rows per page changed: update the docs and this test");
        let pages = cards.len().div_ceil(rows);
        assert_eq!(pages, 34);

        let dir = out_dir("two-hundred");
        let pdf = dir.join("vouchers.pdf");
        std::fs::write(&pdf, &bytes).unwrap();
        eprintln!("200 cards: {} bytes, {pages} pages, rendered in {took:?}", bytes.len());

        let text = text_of(&pdf, None);
        for code in codes {
            let g = grouped(code);
            assert_eq!(count(&text, &g), 2, "{g} should be printed exactly twice");
        }
        assert_eq!(count(&text, &grouped(used)), 0, "a code not passed was printed");
        assert!(text.contains("Подключитесь"), "Cyrillic text is not extractable");
        assert!(text.contains("«Hotel Guest» or «Hotel Guest 5G»"));
        assert!(text.contains("Grand Hotel Moscow"));
        assert!(text.contains("Issued to / Выдан:"));
        assert!(text.contains("2026-12-03 14:05 UTC"));

        assert_eq!(png_pages(&pdf, &dir), pages);

        // Each page holds both copies of exactly its own cards.
        for (p, chunk) in codes.chunks(rows).enumerate() {
            let page = text_of(&pdf, Some(p + 1));
            for code in chunk {
                assert_eq!(count(&page, &grouped(code)), 2, "page {} misses a copy of {code}", p + 1);
            }
        }
    }

    #[test]
    fn no_cards_gives_one_page_saying_so() {
        let sheet = Sheet { account: "acme", networks: &[], portal_url: None };
        let bytes = render(&sheet, &[]).unwrap();
        let dir = out_dir("empty");
        let pdf = dir.join("vouchers.pdf");
        std::fs::write(&pdf, &bytes).unwrap();
        let text = text_of(&pdf, None);
        assert!(text.contains("No unused vouchers"), "{text}");
        assert!(text.contains("Неиспользованных ваучеров нет"), "{text}");
        assert!(!text.contains("Cut along"), "nothing to cut on an empty sheet");
        assert_eq!(png_pages(&pdf, &dir), 1);
    }

    #[test]
    fn odd_inputs_still_render() {
        let long = "Очень-длинное-имя-сети-".repeat(20);
        let nets: Vec<String> = (0..12).map(|i| format!("{long}{i}")).chain([String::new(), "N".repeat(200_000)]).collect();
        let url = format!("http://portal.example/{}", "x".repeat(300));
        let sheet = Sheet { account: &"A".repeat(200_000), networks: &nets, portal_url: Some(&url) };
        let cards = [
            Card { code: "", multi: false, days: Some(0), created_at_ms: i64::MIN },
            Card { code: "12345678901234567890", multi: true, days: Some(u32::MAX), created_at_ms: i64::MAX },
            Card { code: "漢字🙂ab", multi: false, days: None, created_at_ms: 0 },
            Card { code: "100123456789", multi: true, days: Some(1), created_at_ms: 1_796_306_759_000 },
        ];
        let bytes = render(&sheet, &cards).unwrap();
        let dir = out_dir("odd");
        let pdf = dir.join("vouchers.pdf");
        std::fs::write(&pdf, &bytes).unwrap();
        let text = text_of(&pdf, None);
        assert_eq!(count(&text, "1001 2345 6789"), 2);
        assert!(png_pages(&pdf, &dir) >= 1);
    }

    #[test]
    fn wrap_keeps_to_the_width_and_cuts_long_text() {
        let mut fonts = Fonts::load().unwrap();
        let text = "Connect to Wi-Fi «Hotel Guest» or «Hotel Guest 5G» ".repeat(5);
        let lines = wrap(&mut fonts, Face::Regular, BODY_SIZE, &text, 200.0);
        assert_eq!(lines.len(), MAX_PARA_LINES);
        assert!(lines[2].ends_with('…'), "{lines:?}");
        for line in &lines {
            assert!(fonts.width(Face::Regular, BODY_SIZE, line) <= 200.0, "{line}");
        }
        let short = wrap(&mut fonts, Face::Regular, BODY_SIZE, "Действует бессрочно", 200.0);
        assert_eq!(short, ["Действует бессрочно"]);
        let url = format!("http://{}", "x".repeat(200));
        let broken = wrap(&mut fonts, Face::Regular, BODY_SIZE, &url, 100.0);
        assert_eq!(broken.len(), MAX_PARA_LINES);
        let cut = fit(&mut fonts, Face::Bold, SMALL_SIZE, &"W".repeat(100), 50.0);
        assert!(cut.ends_with('…') && fonts.width(Face::Bold, SMALL_SIZE, &cut) <= 50.0);
    }

    #[test]
    fn same_input_same_bytes() {
        let nets = networks();
        let sheet = Sheet { account: "acme", networks: &nets, portal_url: None };
        let codes = codes(7);
        let cards: Vec<Card> = codes.iter().map(|code| Card { code, multi: false, days: Some(3), created_at_ms: 0 }).collect();
        assert_eq!(render(&sheet, &cards).unwrap(), render(&sheet, &cards).unwrap());
    }

    #[test]
    fn long_names_and_urls_still_fit_five_rows() {
        let nets = ["Grand-Hotel-Moscow-Guests".to_owned(), "Grand-Hotel-Moscow-5GHz".to_owned(), "Lobby".to_owned()];
        let sheet = Sheet { account: "acme", networks: &nets, portal_url: Some("https://wifi.grand-hotel-moscow.example/portal/login") };
        let texts = Texts::new(&sheet);
        let card = Card { code: "100123456789", multi: true, days: Some(22), created_at_ms: 0 };
        let guests = [texts.guest(&card)];
        let layout = Layout::new(&mut Fonts::load().unwrap(), &texts, &guests);
        assert_eq!(layout.rows, 5);
        assert!(layout.body < BODY_SIZES[0], "the text shrinks before a row is given up");
    }

    #[test]
    fn guest_texts() {
        let nets = networks();
        let sheet = Sheet { account: "a", networks: &nets, portal_url: None };
        let t = Texts::new(&sheet);
        assert_eq!(t.connect_en, "Connect to Wi-Fi «Hotel Guest» or «Hotel Guest 5G»");
        assert_eq!(t.connect_ru, "Подключитесь к Wi-Fi «Hotel Guest» или «Hotel Guest 5G»");
        assert!(t.open_en.contains("Wi-Fi login page"));
        let g = t.guest(&Card { code: "100123456789", multi: false, days: Some(21), created_at_ms: 0 });
        assert_eq!(g.valid_en, "Valid 21 days from activation · one device");
        assert_eq!(g.valid_ru, "Действует 21 день с момента активации · одно устройство");
        let g = t.guest(&Card { code: "100123456789", multi: true, days: None, created_at_ms: 0 });
        assert_eq!(g.valid_en, "Valid with no time limit · any number of devices");
        assert_eq!(g.valid_ru, "Действует бессрочно · любое число устройств");
    }
}
