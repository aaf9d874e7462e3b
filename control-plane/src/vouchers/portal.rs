//! The captive portal's page (seed 000): where a Wi-Fi guest types a voucher code.
//!
//! One self-contained HTML document per answer, in English or Russian: the form, the form
//! with what went wrong above it, the "you are connected" page, or a page saying to join
//! the Wi-Fi first. The page is served under a strict CSP (`default-src 'none';
//! style-src 'unsafe-inline'; form-action 'self'`), so it has no script at all, no external
//! font, image or style: the CSS is inline, the icons are inline SVG, and the form is a
//! plain POST to `/portal` (fields `code` and `lang`).
//!
//! Markup comes from `maud`, which escapes every interpolated value; the only unescaped
//! text is this module's own CSS and SVG constants. Times are shown in UTC ("3 December
//! 2026, 14:05 UTC" / "3 декабря 2026, 14:05 UTC").
//!
//! Tests and scripts find the answer in the element `#result`: `data-state="connected"`,
//! or `data-state="problem"` with `data-problem` one of `malformed`, `not_found`,
//! `used_elsewhere`, `expired`, `revoked`, `too_many_attempts`, `network_unknown`,
//! `unavailable`, `no_device`.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The page's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    /// `?lang=` wins when it is "ru" or "en"; else the first of ru/en in Accept-Language by
    /// q-value order (ties keep the header's order; `q=0` means "not this one"); default En.
    pub fn choose(query_lang: Option<&str>, accept_language: Option<&str>) -> Lang {
        query_lang.and_then(Lang::parse).or_else(|| accept_language.and_then(from_accept_language)).unwrap_or(Lang::En)
    }

    /// "en" / "ru" (for `<html lang>` and the form's hidden `lang` field).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    fn parse(s: &str) -> Option<Lang> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("ru") {
            Some(Lang::Ru)
        } else if s.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The English or the Russian text, as markup ("Wi-Fi" kept on one line).
    fn say(self, en: &str, ru: &str) -> Markup {
        prose(self.t(en, ru))
    }

    /// Picks the English or the Russian text.
    fn t<'s>(self, en: &'s str, ru: &'s str) -> &'s str {
        match self {
            Lang::En => en,
            Lang::Ru => ru,
        }
    }
}

/// The first of ru/en by q-value in an Accept-Language header, e.g. "ru-RU,ru;q=0.9,en;q=0.8".
fn from_accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(u16, Lang)> = None;
    // A real header has a handful of entries; a hostile one is not read to its end.
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        let Some(lang) = Lang::parse(primary) else {
            continue;
        };
        let mut q = Some(1000);
        for param in parts {
            let param = param.trim();
            if let Some(value) = param.strip_prefix("q=").or_else(|| param.strip_prefix("Q=")) {
                q = q_thousandths(value);
            }
        }
        let Some(q) = q.filter(|&q| q > 0) else {
            continue;
        };
        if best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, lang)| lang)
}

/// A q-value ("0", "0.8", "1.000") in thousandths; `None` when it is not one.
fn q_thousandths(value: &str) -> Option<u16> {
    let value = value.trim();
    if value.is_empty() || value.len() > 5 || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let q: f64 = value.parse().ok()?;
    if (0.0..=1.0).contains(&q) {
        Some((q * 1000.0).round() as u16)
    } else {
        None
    }
}

/// Why a code was refused, in the guest's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not 12 digits, or a mistyped digit (the check digit does not match).
    Malformed,
    /// A wrong code: no such voucher for this network.
    NotFound,
    /// A single-use voucher already used on another device.
    UsedElsewhere,
    /// The voucher's time ran out.
    Expired,
    /// Revoked by the operator (or moved to another network).
    Revoked,
    /// Too many tries from this device or network; try again after this many seconds.
    TooManyAttempts { retry_after_secs: u64 },
    /// This Wi-Fi network is not set up for vouchers.
    NetworkUnknown,
    /// A service error: try again shortly.
    Unavailable,
}

impl Problem {
    /// The `data-problem` value.
    fn slug(self) -> &'static str {
        match self {
            Problem::Malformed => "malformed",
            Problem::NotFound => "not_found",
            Problem::UsedElsewhere => "used_elsewhere",
            Problem::Expired => "expired",
            Problem::Revoked => "revoked",
            Problem::TooManyAttempts { .. } => "too_many_attempts",
            Problem::NetworkUnknown => "network_unknown",
            Problem::Unavailable => "unavailable",
        }
    }

    /// The headline and the explanation.
    fn words(self, lang: Lang) -> (&'static str, String) {
        let (title, text) = match self {
            Problem::Malformed => (
                lang.t("Please check the code", "Проверьте код"),
                lang.t(
                    "A voucher code has 12 digits, and one of them seems to be mistyped. Please enter it again.",
                    "В коде ваучера 12 цифр, и, похоже, одна из них набрана неверно. Введите код ещё раз.",
                ),
            ),
            Problem::NotFound => (
                lang.t("This code didn't work", "Код не подошёл"),
                lang.t(
                    "There is no such voucher for this Wi-Fi network. Please check the code and try again.",
                    "Для этой сети Wi-Fi такого ваучера нет. Проверьте код и попробуйте ещё раз.",
                ),
            ),
            Problem::UsedElsewhere => (
                lang.t("This voucher is already in use", "Этот ваучер уже использован"),
                lang.t(
                    "It is a single-use voucher and it was already used on another device. Please ask for a new voucher.",
                    "Ваучер одноразовый, и его уже использовали на другом устройстве. Попросите новый ваучер.",
                ),
            ),
            Problem::Expired => (
                lang.t("This voucher has expired", "Срок действия ваучера истёк"),
                lang.t(
                    "The time it was issued for has run out. Please ask for a new voucher.",
                    "Время, на которое он был выдан, закончилось. Попросите новый ваучер.",
                ),
            ),
            Problem::Revoked => (
                lang.t("This voucher is no longer valid", "Ваучер больше не действует"),
                lang.t(
                    "The network's operator has cancelled it. Please ask for a new voucher.",
                    "Администратор сети отменил его. Попросите новый ваучер.",
                ),
            ),
            Problem::TooManyAttempts { retry_after_secs } => {
                let when = wait_phrase(lang, retry_after_secs);
                let text = match lang {
                    Lang::En => format!("For security, code entry is paused for a while. Please try again {when}."),
                    Lang::Ru => format!("В целях безопасности ввод кода ненадолго приостановлен. Попробуйте снова {when}."),
                };
                return (lang.t("Too many attempts", "Слишком много попыток"), text);
            }
            Problem::NetworkUnknown => (
                lang.t("Vouchers don't work on this network", "В этой сети ваучеры не принимаются"),
                lang.t(
                    "This Wi-Fi network is not set up for vouchers. Please make sure you are connected to the right network.",
                    "Эта сеть Wi-Fi не настроена для ваучеров. Убедитесь, что вы подключены к нужной сети.",
                ),
            ),
            Problem::Unavailable => (
                lang.t("Something went wrong on our side", "Что-то пошло не так"),
                lang.t(
                    "The service is temporarily unavailable. Please try again in a minute.",
                    "Сервис временно недоступен. Попробуйте ещё раз через минуту.",
                ),
            ),
        };
        (title, text.to_owned())
    }
}

/// What the page shows.
pub enum View<'a> {
    /// The form; `problem` shown above it (role="alert"), `code` pre-filled (what the guest typed).
    Form { network: &'a str, problem: Option<Problem>, code: &'a str },
    /// Success: "You are connected", until when (`ends_at_ms` None = no time limit), the
    /// network's name; inside a collapsed "For apps" the access token (`<textarea id="token">`)
    /// and when to renew it.
    Connected { network: &'a str, ends_at_ms: Option<i64>, token: &'a str, token_expires_at_ms: i64 },
    /// The page was not opened through a Wi-Fi network's portal (no device or network known).
    NoDevice,
}

/// The longest typed code echoed back into the form (a real one is 12 digits and a few spaces).
const MAX_ECHOED_CODE: usize = 40;

/// The whole HTML document.
pub fn page(lang: Lang, view: &View) -> String {
    let (title, body) = match *view {
        View::Form { network, problem, code } => {
            (format!("{} · {}", lang.t("Wi-Fi access", "Доступ к Wi-Fi"), shown_network(network)), form_view(lang, network, problem, code))
        }
        View::Connected { network, ends_at_ms, token, token_expires_at_ms } => (
            format!("{} · {}", lang.t("Connected", "Подключено"), shown_network(network)),
            connected_view(lang, network, ends_at_ms, token, token_expires_at_ms),
        ),
        View::NoDevice => (lang.t("Wi-Fi access", "Доступ к Wi-Fi").to_owned(), no_device_view(lang)),
    };
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="robots" content="noindex, nofollow";
                meta name="referrer" content="no-referrer";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                main class="card" { (body) }
                nav class="langs" aria-label=(lang.t("Language", "Язык")) {
                    @for (other, name) in [(Lang::En, "English"), (Lang::Ru, "Русский")] {
                        @if other == lang {
                            span aria-current="true" { (name) }
                        } @else {
                            a href={ "?lang=" (other.code()) } hreflang=(other.code()) lang=(other.code()) { (name) }
                        }
                    }
                }
            }
        }
    }
    .into_string()
}

/// The network's name as shown; "Wi-Fi" when there is none.
fn shown_network(network: &str) -> &str {
    let network = network.trim();
    if network.is_empty() {
        "Wi-Fi"
    } else {
        network
    }
}

fn network_chip(network: &str) -> Markup {
    html! {
        div class="chip" {
            (PreEscaped(ICON_WIFI))
            span class="chip-name" { (shown_network(network)) }
        }
    }
}

fn form_view(lang: Lang, network: &str, problem: Option<Problem>, code: &str) -> Markup {
    let code = truncated(code.trim(), MAX_ECHOED_CODE);
    html! {
        (network_chip(network))
        h1 { (lang.say("Welcome", "Добро пожаловать")) }
        p class="lead" { (lang.say("Enter the code from your voucher to get online.", "Введите код с ваучера, чтобы выйти в интернет.")) }
        @if let Some(problem) = problem {
            @let (headline, text) = problem.words(lang);
            div id="result" class="notice" role="alert" data-state="problem" data-problem=(problem.slug()) {
                (PreEscaped(ICON_ALERT))
                div {
                    strong { (prose(headline)) }
                    p { (prose(&text)) }
                }
            }
        }
        form method="post" action="/portal" {
            input type="hidden" name="lang" value=(lang.code());
            label for="code" { (lang.say("Voucher code", "Код ваучера")) }
            input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                autocapitalize="off" autocorrect="off" spellcheck="false" enterkeyhint="go"
                maxlength="32" required placeholder="0000 0000 0000" aria-describedby="code-hint" value=(code);
            p class="hint" id="code-hint" {
                (lang.say("12 digits, as printed on your voucher. Spaces are optional.", "12 цифр, как на ваучере. Пробелы можно не вводить."))
            }
            button type="submit" { (lang.say("Connect", "Подключиться")) }
        }
        p class="help" {
            (lang.say("No code, or need help? Ask the staff who gave you the voucher.", "Нет кода или нужна помощь? Обратитесь к сотрудникам, которые выдали ваучер."))
        }
    }
}

fn connected_view(lang: Lang, network: &str, ends_at_ms: Option<i64>, token: &str, token_expires_at_ms: i64) -> Markup {
    html! {
        div id="result" role="status" data-state="connected" {
            div class="done" { (PreEscaped(ICON_CHECK)) }
            h1 { (lang.say("You are connected", "Вы подключены")) }
            p class="lead" { (lang.say("The Internet now works on this device.", "Теперь на этом устройстве работает интернет.")) }
            dl class="facts" {
                div {
                    dt { (lang.say("Network", "Сеть")) }
                    dd { (shown_network(network)) }
                }
                div {
                    @match ends_at_ms {
                        Some(ms) => {
                            dt { (lang.say("Access until", "Доступ до")) }
                            dd { (utc_time(lang, ms)) }
                        }
                        None => {
                            dt { (lang.say("Access", "Доступ")) }
                            dd { (lang.say("No time limit", "Без ограничения по времени")) }
                        }
                    }
                }
            }
            p class="help" { (lang.say("You can close this page now.", "Эту страницу можно закрыть.")) }
        }
        details {
            summary { (lang.say("For apps", "Для приложений")) }
            p {
                (lang.say(
                    "An app on this device that asks for a Wi-Fi access token can use this one.",
                    "Если приложение на этом устройстве просит токен доступа к Wi-Fi, используйте этот.",
                ))
            }
            label for="token" { (lang.say("Access token", "Токен доступа")) }
            textarea id="token" readonly rows="4" spellcheck="false" autocomplete="off" { (token) }
            p class="hint" {
                (lang.say("Renew it by entering the code again before ", "Чтобы продлить его, введите код ещё раз до "))
                strong { (utc_time(lang, token_expires_at_ms)) }
                "."
            }
        }
    }
}

fn no_device_view(lang: Lang) -> Markup {
    html! {
        (network_chip(""))
        div id="result" data-state="problem" data-problem="no_device" {
            h1 { (lang.say("Connect to the Wi-Fi first", "Сначала подключитесь к Wi-Fi")) }
            p class="lead" {
                (lang.say(
                    "This page lets guests of a Wi-Fi network go online with a voucher, but it was not opened through a Wi-Fi network.",
                    "На этой странице гости сети Wi-Fi входят в интернет по ваучеру, но сейчас она открыта не через сеть Wi-Fi.",
                ))
            }
            ol class="steps" {
                li { (lang.say("Open your device's Wi-Fi settings and join the guest network.", "Откройте настройки Wi-Fi на устройстве и подключитесь к гостевой сети.")) }
                li { (lang.say("Wait for the login page to open, or open any website in your browser.", "Дождитесь страницы входа или откройте в браузере любой сайт.")) }
                li { (lang.say("Enter the code from your voucher there.", "Введите там код с ваучера.")) }
            }
        }
        p class="help" {
            (lang.say("Need help? Ask the staff who gave you the voucher.", "Нужна помощь? Обратитесь к сотрудникам, которые выдали ваучер."))
        }
    }
}

/// Our own text, with "Wi-Fi" never broken at its hyphen.
fn prose(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split("Wi-Fi").enumerate() {
            @if i > 0 {
                span class="nw" { "Wi-Fi" }
            }
            (part)
        }
    }
}

/// At most `max` characters of `s`.
fn truncated(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

/// "in 2 minutes" / "через 2 минуты": seconds below a minute, minutes (rounded up) below an
/// hour, hours (rounded up) beyond.
fn wait_phrase(lang: Lang, secs: u64) -> String {
    if secs == 0 {
        return lang.t("in a few seconds", "через несколько секунд").to_owned();
    }
    let (n, en_one, en_many, ru) = if secs < 60 {
        (secs, "second", "seconds", ["секунду", "секунды", "секунд"])
    } else if secs < 3600 {
        (secs.div_ceil(60), "minute", "minutes", ["минуту", "минуты", "минут"])
    } else {
        (secs.div_ceil(3600), "hour", "hours", ["час", "часа", "часов"])
    };
    match lang {
        Lang::En => format!("in {n} {}", if n == 1 { en_one } else { en_many }),
        Lang::Ru => format!("через {n} {}", ru_plural(n, ru)),
    }
}

/// The Russian form for `n`: `[one, few, many]`, e.g. 1 минуту, 2 минуты, 5 минут, 11 минут, 21 минуту.
fn ru_plural(n: u64, [one, few, many]: [&'static str; 3]) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=14) => many,
        (1, _) => one,
        (2..=4, _) => few,
        _ => many,
    }
}

const MONTHS_EN: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const MONTHS_RU: [&str; 12] =
    ["января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря"];

/// "3 December 2026, 14:05 UTC" / "3 декабря 2026, 14:05 UTC" for ms since the epoch.
fn utc_time(lang: Lang, ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = crate::tokens::keys::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let months = match lang {
        Lang::En => &MONTHS_EN,
        Lang::Ru => &MONTHS_RU,
    };
    let month = months.get(m.saturating_sub(1) as usize).copied().unwrap_or_default();
    format!("{d} {month} {y}, {:02}:{:02} UTC", sod / 3600, sod % 3600 / 60)
}

// Icons: inline SVG (the CSP allows no image requests), drawn with the text colour.
const ICON_WIFI: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round"><path d="M1.5 8.8a15.5 15.5 0 0 1 21 0"/><path d="M5 12.6a10.5 10.5 0 0 1 14 0"/><path d="M8.6 16.3a5.4 5.4 0 0 1 6.8 0"/><circle cx="12" cy="19.7" r="1.2" fill="currentColor" stroke="none"/></svg>"#;
const ICON_CHECK: &str = r#"<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="2.6" stroke-linecap="round" stroke-linejoin="round"><path d="M5 12.5l4.5 4.5L19 7.5"/></svg>"#;
const ICON_ALERT: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"><circle cx="12" cy="12" r="10"/><path d="M12 7v6"/><circle cx="12" cy="16.6" r="1.2" fill="currentColor" stroke="none"/></svg>"#;

const CSS: &str = r#"
:root{--bg:#eef2f7;--bg2:#dce7f6;--card:#fff;--text:#17202c;--muted:#566274;--line:#c9d2de;--accent:#0a58ca;--accent-dark:#084298;--ring:rgba(10,88,202,.28);--link:#0a58ca;--bad:#b42318;--bad-bg:#fef1f0;--bad-line:#f6c7c2;--ok:#0f7a52;--ok-bg:#e3f5ec;--soft:#f4f6f9}
@media (prefers-color-scheme:dark){:root{--bg:#0d131c;--bg2:#142238;--card:#182130;--text:#e9eef5;--muted:#a5b0bf;--line:#38465a;--accent:#2f6fe4;--accent-dark:#2458b8;--ring:rgba(96,150,255,.35);--link:#8ab4ff;--bad:#ff9a8f;--bad-bg:#3a1d1d;--bad-line:#6b2d2a;--ok:#5fd3a0;--ok-bg:#123327;--soft:#111925}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;min-height:100vh;min-height:100dvh;display:flex;flex-direction:column;align-items:center;justify-content:center;gap:20px;padding:24px 16px;background:linear-gradient(165deg,var(--bg2) 0%,var(--bg) 55%) fixed;background-color:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
.card{width:100%;max-width:440px;background:var(--card);border-radius:20px;padding:28px 22px 24px;box-shadow:0 1px 3px rgba(16,24,40,.08),0 16px 40px rgba(16,24,40,.12)}
@media (min-width:480px){.card{padding:40px 40px 32px}}
@media (max-width:359px){body{padding:12px 10px}.card{padding:22px 16px 20px}h1{font-size:1.5rem}}
h1{margin:14px 0 6px;font-size:1.75rem;line-height:1.2;letter-spacing:-.01em}
p{margin:0}
.nw{white-space:nowrap}
.lead{color:var(--muted);font-size:1.0625rem}
.icon{width:22px;height:22px;flex:none}
.chip{display:inline-flex;align-items:center;gap:8px;max-width:100%;padding:6px 14px 6px 10px;border-radius:999px;background:var(--soft);color:var(--link);font-weight:600;font-size:.9375rem}
.chip-name{color:var(--text);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.notice{display:flex;gap:12px;margin:20px 0 0;padding:14px 16px;border:1px solid var(--bad-line);border-radius:14px;background:var(--bad-bg)}
.notice .icon{color:var(--bad);margin-top:1px}
.notice strong{display:block;color:var(--bad);font-size:1.0625rem;line-height:1.35}
.notice p{margin-top:4px;font-size:.9375rem}
form{margin-top:22px}
label{display:block;margin-bottom:8px;font-weight:600}
#code{display:block;width:100%;min-height:60px;padding:10px 8px;border:2px solid var(--line);border-radius:14px;background:var(--card);color:var(--text);font:600 clamp(1.25rem,6.6vw,1.625rem)/1.2 ui-monospace,"SF Mono",Menlo,Consolas,"DejaVu Sans Mono",monospace;letter-spacing:.06em;text-align:center;font-variant-numeric:tabular-nums}
#code::placeholder{color:var(--muted);opacity:.35}
#code:focus{outline:none;border-color:var(--accent);box-shadow:0 0 0 4px var(--ring)}
.hint{margin-top:8px;color:var(--muted);font-size:.875rem}
button{display:block;width:100%;min-height:56px;margin-top:20px;padding:12px 20px;border:0;border-radius:14px;background:var(--accent);color:#fff;font:inherit;font-size:1.125rem;font-weight:600;cursor:pointer}
button:hover{background:var(--accent-dark)}
button:focus-visible{outline:none;box-shadow:0 0 0 4px var(--ring)}
.help{margin-top:22px;padding-top:18px;border-top:1px solid var(--line);color:var(--muted);font-size:.875rem;text-align:center}
.done{display:flex;align-items:center;justify-content:center;width:64px;height:64px;border-radius:50%;background:var(--ok-bg);color:var(--ok)}
.done svg{width:34px;height:34px}
.facts{margin:22px 0 0;padding:4px 16px;border-radius:14px;background:var(--soft)}
.facts div{display:flex;flex-wrap:wrap;justify-content:space-between;gap:2px 16px;padding:12px 0}
.facts div+div{border-top:1px solid var(--line)}
.facts dt{color:var(--muted)}
.facts dd{margin:0;font-weight:600;overflow-wrap:anywhere}
details{margin-top:18px;font-size:.9375rem}
summary{cursor:pointer;color:var(--link);font-weight:600;padding:4px 0}
details[open] summary{margin-bottom:10px}
details label{margin:12px 0 6px;font-size:.875rem}
#token{display:block;width:100%;padding:10px 12px;border:1px solid var(--line);border-radius:10px;background:var(--soft);color:var(--text);font:.8125rem/1.45 ui-monospace,"SF Mono",Menlo,Consolas,"DejaVu Sans Mono",monospace;word-break:break-all;resize:vertical}
.steps{margin:18px 0 0;padding-left:1.4em}
.steps li{margin:8px 0;padding-left:4px}
.langs{display:flex;gap:16px;font-size:.9375rem;color:var(--muted)}
.langs a{color:var(--link);text-decoration:none;padding:6px 2px}
.langs a:hover{text-decoration:underline}
.langs span{padding:6px 2px;font-weight:600;color:var(--text)}
"#;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ALL_PROBLEMS: [Problem; 8] = [
        Problem::Malformed,
        Problem::NotFound,
        Problem::UsedElsewhere,
        Problem::Expired,
        Problem::Revoked,
        Problem::TooManyAttempts { retry_after_secs: 120 },
        Problem::NetworkUnknown,
        Problem::Unavailable,
    ];

    fn form(lang: Lang, network: &str, problem: Option<Problem>, code: &str) -> String {
        page(lang, &View::Form { network, problem, code })
    }

    /// The page without the spans that keep "Wi-Fi" on one line.
    fn plain(html: &str) -> String {
        html.replace(r#"<span class="nw">Wi-Fi</span>"#, "Wi-Fi")
    }

    #[test]
    fn query_lang_wins_when_it_is_ru_or_en() {
        assert_eq!(Lang::choose(Some("ru"), Some("en")), Lang::Ru);
        assert_eq!(Lang::choose(Some("en"), Some("ru-RU,ru;q=0.9")), Lang::En);
        assert_eq!(Lang::choose(Some(" RU "), None), Lang::Ru);
        // Anything else in ?lang= is ignored: Accept-Language decides.
        assert_eq!(Lang::choose(Some("de"), Some("ru")), Lang::Ru);
        assert_eq!(Lang::choose(Some(""), Some("ru")), Lang::Ru);
        assert_eq!(Lang::choose(Some("russian"), None), Lang::En);
    }

    #[test]
    fn accept_language_picks_the_first_of_ru_en_by_q() {
        assert_eq!(Lang::choose(None, Some("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7")), Lang::Ru);
        assert_eq!(Lang::choose(None, Some("en-GB,en;q=0.9,ru;q=0.8")), Lang::En);
        assert_eq!(Lang::choose(None, Some("de-DE,de;q=0.9,ru;q=0.8,en;q=0.7")), Lang::Ru);
        // q order, not header order.
        assert_eq!(Lang::choose(None, Some("en;q=0.5, ru;q=0.8")), Lang::Ru);
        assert_eq!(Lang::choose(None, Some("ru;q=0.3,en;Q=0.4")), Lang::En);
        // Ties keep the header's order.
        assert_eq!(Lang::choose(None, Some("ru, en")), Lang::Ru);
        assert_eq!(Lang::choose(None, Some("en;q=0.8, ru;q=0.8")), Lang::En);
        // q=0 means "not this one"; a broken q drops that entry.
        assert_eq!(Lang::choose(None, Some("ru;q=0, en;q=0.1")), Lang::En);
        assert_eq!(Lang::choose(None, Some("en;q=zzz, ru;q=0.2")), Lang::Ru);
        assert_eq!(Lang::choose(None, Some("RU_ru")), Lang::Ru);
        assert_eq!(Lang::choose(None, Some("rue, russian, ru")), Lang::Ru);
    }

    #[test]
    fn language_defaults_to_english() {
        assert_eq!(Lang::choose(None, None), Lang::En);
        assert_eq!(Lang::choose(None, Some("")), Lang::En);
        assert_eq!(Lang::choose(None, Some("de-DE,fr;q=0.5,*;q=0.1")), Lang::En);
        assert_eq!(Lang::choose(None, Some(";;;,,,q=1")), Lang::En);
        assert_eq!(Lang::choose(None, Some("ru;q=0")), Lang::En);
        assert_eq!(Lang::En.code(), "en");
        assert_eq!(Lang::Ru.code(), "ru");
    }

    #[test]
    fn form_posts_code_and_lang_to_the_portal() {
        let html = form(Lang::Ru, "Hotel", None, "");
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"ru\">"));
        assert!(html.contains(r#"<form method="post" action="/portal">"#));
        assert!(html.contains(r#"<input type="hidden" name="lang" value="ru">"#));
        assert!(html.contains(r#"name="code""#));
        assert!(html.contains(r#"inputmode="numeric""#));
        assert!(html.contains(r#"autocomplete="one-time-code""#));
        assert!(html.contains(r#"<button type="submit">Подключиться</button>"#));
        assert!(html.contains(r#"name="viewport""#));
        assert!(!html.contains("id=\"result\""), "no result box without a problem");
        assert!(form(Lang::En, "Hotel", None, "").contains(r#"<input type="hidden" name="lang" value="en">"#));
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere_and_there_is_no_script() {
        for lang in [Lang::En, Lang::Ru] {
            for html in [
                form(lang, "Hotel", Some(Problem::Expired), "1"),
                page(lang, &View::Connected { network: "n", ends_at_ms: Some(0), token: "t", token_expires_at_ms: 0 }),
                page(lang, &View::NoDevice),
            ] {
                assert!(!html.contains("<script"), "{html}");
                assert!(!html.contains("src="), "{html}");
                assert!(!html.contains("http"), "{html}");
                assert!(!html.contains("<link"), "{html}");
                assert!(!html.contains("url("), "{html}");
            }
        }
    }

    #[test]
    fn network_name_and_typed_code_are_escaped() {
        let html = form(Lang::En, "<script>alert(1)</script>", Some(Problem::NotFound), r#""><img src=x onerror=alert(1)>"#);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("value=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;\""), "{html}");

        let html =
            page(Lang::Ru, &View::Connected { network: "</title><b>", ends_at_ms: None, token: "</textarea><b>x", token_expires_at_ms: 0 });
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;/textarea&gt;&lt;b&gt;x</textarea>"), "{html}");
        assert!(html.contains("<title>Подключено · &lt;/title&gt;&lt;b&gt;</title>"), "{html}");
    }

    #[test]
    fn long_typed_code_is_cut_when_echoed() {
        let typed = "9".repeat(5000);
        let html = form(Lang::En, "n", Some(Problem::Malformed), &typed);
        assert!(html.contains(&format!("value=\"{}\"", "9".repeat(MAX_ECHOED_CODE))));
        assert!(!html.contains(&"9".repeat(MAX_ECHOED_CODE + 1)));
        assert_eq!(truncated("жжж", 2), "жж");
        assert_eq!(truncated("ab", 5), "ab");
    }

    #[test]
    fn each_problem_renders_its_data_problem_in_an_alert() {
        let expected =
            ["malformed", "not_found", "used_elsewhere", "expired", "revoked", "too_many_attempts", "network_unknown", "unavailable"];
        for (problem, slug) in ALL_PROBLEMS.into_iter().zip(expected) {
            for lang in [Lang::En, Lang::Ru] {
                let html = plain(&form(lang, "Hotel", Some(problem), "1001 2345 6789"));
                let tag = format!(r#"<div id="result" class="notice" role="alert" data-state="problem" data-problem="{slug}">"#);
                assert!(html.contains(&tag), "{problem:?} {lang:?}: {html}");
                assert!(html.contains(r#"value="1001 2345 6789""#), "the typed code is kept");
                let (headline, text) = problem.words(lang);
                assert!(html.contains(headline) && html.contains(&text));
            }
        }
        let html = page(Lang::En, &View::NoDevice);
        assert!(html.contains(r#"data-state="problem" data-problem="no_device""#), "{html}");
        assert!(html.contains(r#"<h1>Connect to the <span class="nw">Wi-Fi</span> first</h1>"#), "{html}");
        assert!(plain(&page(Lang::Ru, &View::NoDevice)).contains("Сначала подключитесь к Wi-Fi"));
    }

    #[test]
    fn problems_are_worded_in_the_page_language() {
        let ru = form(Lang::Ru, "Hotel", Some(Problem::UsedElsewhere), "");
        assert!(ru.contains("Этот ваучер уже использован") && ru.contains("на другом устройстве"));
        let en = form(Lang::En, "Hotel", Some(Problem::UsedElsewhere), "");
        assert!(en.contains("This voucher is already in use") && en.contains("another device"));
        let wait = form(Lang::Ru, "Hotel", Some(Problem::TooManyAttempts { retry_after_secs: 95 }), "");
        assert!(wait.contains("Попробуйте снова через 2 минуты."), "{wait}");
        let wait = form(Lang::En, "Hotel", Some(Problem::TooManyAttempts { retry_after_secs: 60 }), "");
        assert!(wait.contains("Please try again in 1 minute."), "{wait}");
    }

    #[test]
    fn russian_plural_forms() {
        let minutes = ["минуту", "минуты", "минут"];
        for (n, word) in [
            (1, "минуту"),
            (2, "минуты"),
            (4, "минуты"),
            (5, "минут"),
            (11, "минут"),
            (12, "минут"),
            (14, "минут"),
            (21, "минуту"),
            (22, "минуты"),
            (25, "минут"),
            (101, "минуту"),
            (111, "минут"),
            (0, "минут"),
        ] {
            assert_eq!(ru_plural(n, minutes), word, "{n}");
        }
        for (secs, ru, en) in [
            (1, "через 1 секунду", "in 1 second"),
            (3, "через 3 секунды", "in 3 seconds"),
            (21, "через 21 секунду", "in 21 seconds"),
            (30, "через 30 секунд", "in 30 seconds"),
            (59, "через 59 секунд", "in 59 seconds"),
            (60, "через 1 минуту", "in 1 minute"),
            (61, "через 2 минуты", "in 2 minutes"),
            (120, "через 2 минуты", "in 2 minutes"),
            (300, "через 5 минут", "in 5 minutes"),
            (660, "через 11 минут", "in 11 minutes"),
            (1260, "через 21 минуту", "in 21 minutes"),
            (3600, "через 1 час", "in 1 hour"),
            (7200, "через 2 часа", "in 2 hours"),
            (18_000, "через 5 часов", "in 5 hours"),
            (0, "через несколько секунд", "in a few seconds"),
        ] {
            assert_eq!(wait_phrase(Lang::Ru, secs), ru);
            assert_eq!(wait_phrase(Lang::En, secs), en);
        }
    }

    #[test]
    fn utc_times_in_both_languages() {
        assert_eq!(utc_time(Lang::En, 1_796_306_700_000), "3 December 2026, 14:05 UTC");
        assert_eq!(utc_time(Lang::Ru, 1_796_306_700_000), "3 декабря 2026, 14:05 UTC");
        assert_eq!(utc_time(Lang::En, 1_709_251_199_999), "29 February 2024, 23:59 UTC");
        assert_eq!(utc_time(Lang::Ru, 951_868_800_000), "1 марта 2000, 00:00 UTC");
        assert_eq!(utc_time(Lang::En, 0), "1 January 1970, 00:00 UTC");
        assert_eq!(utc_time(Lang::En, -60_000), "31 December 1969, 23:59 UTC");
    }

    #[test]
    fn connected_page_shows_the_end_and_the_token() {
        let html = page(
            Lang::En,
            &View::Connected {
                network: "Hotel Aurora",
                ends_at_ms: Some(1_796_306_700_000),
                token: "tok.en",
                token_expires_at_ms: 951_868_800_000,
            },
        );
        assert!(html.contains(r#"<div id="result" role="status" data-state="connected">"#), "{html}");
        assert!(html.contains("You are connected"));
        assert!(html.contains("Hotel Aurora"));
        assert!(html.contains("Access until</dt><dd>3 December 2026, 14:05 UTC</dd>"), "{html}");
        assert!(html.contains("<details><summary>For apps</summary>"), "collapsed: {html}");
        assert!(html.contains(r#"<textarea id="token" readonly rows="4""#), "{html}");
        assert!(html.contains(">tok.en</textarea>"));
        assert!(html.contains("before <strong>1 March 2000, 00:00 UTC</strong>"), "{html}");
        assert!(!html.contains("data-problem"));

        let html = page(Lang::Ru, &View::Connected { network: "", ends_at_ms: None, token: "t", token_expires_at_ms: 0 });
        assert!(html.contains("Вы подключены"));
        assert!(html.contains("Без ограничения по времени"));
        assert!(html.contains("<summary>Для приложений</summary>"));
        assert!(html.contains("<dd>Wi-Fi</dd>"), "an unnamed network: {html}");
        let html = page(Lang::En, &View::Connected { network: "n", ends_at_ms: None, token: "t", token_expires_at_ms: 0 });
        assert!(html.contains("No time limit"));
    }

    #[test]
    fn language_links_point_to_the_other_language() {
        let html = form(Lang::En, "Hotel", None, "");
        assert!(html.contains(r#"<a href="?lang=ru" hreflang="ru" lang="ru">Русский</a>"#), "{html}");
        assert!(html.contains(r#"<span aria-current="true">English</span>"#));
        let html = page(Lang::Ru, &View::NoDevice);
        assert!(html.contains(r#"<a href="?lang=en" hreflang="en" lang="en">English</a>"#), "{html}");
    }
}
