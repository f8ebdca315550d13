//! Every option of the module, declared once: its name in Prosody's config,
//! the key the shim passes it under, how Prosody reads it, its default and
//! its help. The shim reads the options from this list (`native.options`),
//! `config` validates them against it, and the README's
//! option tables are made from it (a test keeps them the same).

/// How an option is read and what it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Type {
    /// An http(s) URL; required.
    Url,
    /// A set of stanza kinds, with its default.
    Kinds(&'static [&'static str]),
    /// Seconds (or, where Prosody reads them, a period such as `"30s"`).
    Seconds(f64),
    /// A whole number at least `min`.
    Count {
        default: usize,
        min: usize,
    },
    /// A positive number, per second.
    Rate(f64),
    Flag(bool),
    /// One of the words listed, the first being the default.
    Choice(&'static [&'static str]),
    /// A string or a list of them.
    Secrets,
    /// A table of header names and values.
    Headers,
    /// A file, relative to the config file's folder.
    Path,
    /// A secret string; without it the feature is off.
    Token,
    /// A list of room JIDs (`room@service/nick`, nick optional).
    Rooms,
    /// A plain string, with a default the README states.
    Text,
    /// A menu of commands: nodes, or `{ node = , name = }` tables.
    Commands,
    /// A list of bare JIDs and domains.
    Jids,
}

/// One option.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// As the admin writes it in Prosody's config.
    pub name: &'static str,
    /// What the shim passes it as to `new_delivery`.
    pub key: &'static str,
    pub kind: Type,
    /// The name the original module used, still read (with a warning).
    pub alias: Option<&'static str>,
    /// For the README: what it does.
    pub help: &'static str,
    /// For the README, when the default says more than its value.
    pub shown_default: Option<&'static str>,
}

const fn spec(name: &'static str, key: &'static str, kind: Type, help: &'static str) -> Spec {
    Spec {
        name,
        key,
        kind,
        alias: None,
        help,
        shown_default: None,
    }
}

pub const URL: Spec = spec(
    "component_post_url",
    "url",
    Type::Url,
    "where stanzas are POSTed (`http://` or `https://`)",
);
pub const STANZAS: Spec = Spec {
    alias: Some("post_stanza_types"),
    ..spec(
        "component_post_stanzas",
        "stanzas",
        Type::Kinds(&["message"]),
        "kinds forwarded: any of `\"message\"`, `\"presence\"`, `\"iq\"`. The original \
         module's `post_stanza_types` is still read, with a deprecation warning",
    )
};
pub const TIMEOUT: Spec = spec(
    "component_post_timeout",
    "timeout",
    Type::Seconds(30.0),
    "seconds one stanza's delivery may take in all, from its arrival: waiting its turn and retries included; then the sender gets \
     `wait`/`remote-server-timeout`",
);
pub const CONNECT_TIMEOUT: Spec = spec(
    "component_post_connect_timeout",
    "connect_timeout",
    Type::Seconds(5.0),
    "seconds to set up a connection (TCP and TLS)",
);
pub const MAX_INFLIGHT: Spec = spec(
    "component_post_max_inflight",
    "max_inflight",
    Type::Count {
        default: 64,
        min: 1,
    },
    "POSTs in progress at once, per component host",
);
pub const QUEUE_SIZE: Spec = spec(
    "component_post_queue_size",
    "queue_size",
    Type::Count {
        default: 1000,
        min: 0,
    },
    "further stanzas that may wait for a free slot; beyond that a stanza is refused at once \
     with `wait`/`resource-constraint` (logged once as a warning, not once per stanza)",
);
pub const QUEUE_BYTES: Spec = Spec {
    shown_default: Some("`67108864` (64 MiB)"),
    ..spec(
        "component_post_queue_bytes",
        "queue_bytes",
        Type::Count {
            default: 64 * 1024 * 1024,
            min: 1,
        },
        "bytes of JSON (as POSTed) the stanzas in flight or waiting may come to, per host; \
         past it a stanza is refused as past `component_post_queue_size`",
    )
};
pub const CONVERSATION_QUEUE: Spec = spec(
    "component_post_conversation_queue",
    "conversation_queue",
    Type::Count {
        default: 100,
        min: 0,
    },
    "stanzas one conversation (a sender's bare JID and one component JID) may have waiting \
     beyond the one being POSTed; beyond that its new stanzas are refused at once with \
     `wait`/`resource-constraint`, and other conversations are not held up",
);
pub const RETRIES: Spec = spec(
    "component_post_retries",
    "retries",
    Type::Count { default: 2, min: 0 },
    "extra attempts after a connection failure, a timeout, or HTTP 408, 425, 429, 502, 503, \
     504; never after other 4xx, 500, 501. Backoff is exponential from 250 ms with jitter, \
     capped at 10 s; a `Retry-After` asking for longer is honoured; no retry starts past the \
     stanza's deadline",
);
pub const ORDERING: Spec = spec(
    "component_post_ordering",
    "ordering",
    Type::Choice(&["conversation", "none"]),
    "`\"conversation\"`: stanzas between one sender (bare JID) and one component JID (bare) \
     are POSTed one at a time in arrival order, so replies come back in order, while other \
     conversations go on in parallel; `\"none\"`: every stanza at once",
);
pub const SECRET: Spec = spec(
    "component_post_secret",
    "secrets",
    Type::Secrets,
    "sign requests the Standard Webhooks way; `\"whsec_<base64>\"` or a plain string; a list \
     signs with each (key rotation)",
);
pub const SIGNING_KEY: Spec = Spec {
    shown_default: Some("none"),
    ..spec(
        "component_post_signing_key",
        "signing_key",
        Type::Token,
        "sign requests with an ed25519 key, `\"whsk_<base64>\"` (Standard Webhooks `v1a`), \
         beside any `component_post_secret`: the web service verifies with the public key \
         (logged at load as `whpk_…`) and holds nothing that could sign",
    )
};
pub const HEADERS: Spec = spec(
    "component_post_headers",
    "headers",
    Type::Headers,
    "extra request headers, e.g. `{ Authorization = \"Bearer …\" }`",
);
pub const CA_FILE: Spec = spec(
    "component_post_ca_file",
    "ca_file",
    Type::Path,
    "a PEM file of extra CAs to trust for the web service (relative to the config file's \
     folder)",
);
pub const TLS_VERIFY: Spec = spec(
    "component_post_tls_verify",
    "tls_verify",
    Type::Flag(true),
    "`false` accepts any certificate (logs a warning at load)",
);
pub const MAX_RESPONSE: Spec = spec(
    "component_post_max_response",
    "max_response",
    Type::Count {
        default: 1024 * 1024,
        min: 1,
    },
    "bytes of answer read at most; a larger answer is cut off and the sender gets \
     `cancel`/`internal-server-error`",
);
pub const DURABLE: Spec = spec(
    "component_post_durable",
    "durable",
    Type::Flag(false),
    "hold what the web service cannot take and deliver it later (see \
     [Durable delivery](#durable-delivery))",
);
pub const MAX_AGE: Spec = spec(
    "component_post_max_age",
    "max_age",
    Type::Seconds(86_400.0),
    "durable: seconds a held stanza is tried before it is given up (dead letter, sender gets \
     an error)",
);
pub const DURABLE_LIMIT: Spec = spec(
    "component_post_durable_limit",
    "durable_limit",
    Type::Count {
        default: 100_000,
        min: 1,
    },
    "durable: stanzas held at most per host; past it they bounce as without durable delivery \
     (logged once)",
);
pub const DURABLE_BYTES: Spec = Spec {
    shown_default: Some("`268435456` (256 MiB)"),
    ..spec(
        "component_post_durable_bytes",
        "durable_bytes",
        Type::Count {
            default: 256 * 1024 * 1024,
            min: 1,
        },
        "durable: bytes of held stanzas (as XML) at most per host; past it they bounce as past \
         `component_post_durable_limit`",
    )
};
pub const DEAD_LETTER_AGE: Spec = Spec {
    shown_default: Some("`604800` (7 days)"),
    ..spec(
        "component_post_dead_letter_age",
        "dead_letter_age",
        Type::Seconds(604_800.0),
        "durable: seconds a dead letter is kept in storage before it is deleted (checked at \
         load and then every hour, or as often as this when shorter)",
    )
};
pub const ROOMS: Spec = spec(
    "component_post_rooms",
    "rooms",
    Type::Rooms,
    "group chats to join at load, e.g. `{ \"room@conference.example.com/Bot\" }`; the nick \
     is optional; an item may be a table, `{ jid = \"room@conference.example.com/Bot\", mentions_only = true }` \
     (see [Group chat](#group-chat))",
);
pub const ROOM_MENTIONS_ONLY: Spec = spec(
    "component_post_room_mentions_only",
    "room_mentions_only",
    Type::Flag(false),
    "in rooms, POST only the messages that mention the bot (its nick as a word, `@Nick`, `Nick:`, or a \
     XEP-0372 mention); private messages always. A room of `component_post_rooms` may say otherwise",
);
pub const MAX_ROOMS: Spec = spec(
    "component_post_max_rooms",
    "max_rooms",
    Type::Count {
        default: 100,
        min: 1,
    },
    "rooms one host may be in, configured ones included; past it a join from a reply is an \
     invalid reply and one from a push a 400, naming this option",
);
pub const NICK: Spec = Spec {
    shown_default: Some("the first label of the component's domain"),
    ..spec(
        "component_post_nick",
        "nick",
        Type::Text,
        "the nick in a room of `component_post_rooms` that names none",
    )
};
pub const COMMANDS: Spec = spec(
    "component_post_commands",
    "commands",
    Type::Commands,
    "the menu of ad-hoc commands, e.g. `{ { node = \"weather\", name = \"Weather\" }, \"help\" }` \
     (a plain node is its own name); the web service may push another (see [Menus](#menus))",
);
pub const COMMAND_TIMEOUT: Spec = spec(
    "component_post_command_timeout",
    "command_timeout",
    Type::Seconds(600.0),
    "seconds a command's session is kept without a step; then a step of it gets \
     `bad-sessionid`",
);
pub const UPLOAD_SERVICE: Spec = Spec {
    shown_default: Some("found on the server (disco)"),
    ..spec(
        "component_post_upload_service",
        "upload_service",
        Type::Text,
        "the XEP-0363 upload service files are uploaded to, e.g. `\"upload.example.com\"`; \
         unset, the first service the domain above the component's lists (see [Files](#files))",
    )
};
pub const MAX_UPLOAD: Spec = Spec {
    shown_default: Some("`5242880` (5 MiB)"),
    ..spec(
        "component_post_max_upload",
        "max_upload",
        Type::Count {
            default: 5 * 1024 * 1024,
            min: 1,
        },
        "bytes a file of a reply or push may have; a reply or push carrying one may be larger than \
         `component_post_max_response` or `component_push_max_size` by the file in base64",
    )
};
pub const TYPING: Spec = Spec {
    shown_default: Some("`0`: off"),
    ..spec(
        "component_post_typing",
        "typing",
        Type::Seconds(0.0),
        "seconds a message may wait for its answer before its sender sees the bot typing (XEP-0085 \
         `composing`, then `active` with the answer), e.g. `1` (see [Typing and streaming](#typing-and-streaming))",
    )
};
pub const STREAM_INTERVAL: Spec = spec(
    "component_post_stream_interval",
    "stream_interval",
    Type::Seconds(1.0),
    "a streamed answer (`application/x-ndjson`) is corrected at most once in this many seconds; \
     lines in between are skipped, the last is always sent",
);
pub const STREAM_TIMEOUT: Spec = spec(
    "component_post_stream_timeout",
    "stream_timeout",
    Type::Seconds(300.0),
    "seconds a streamed answer may take in all, from its POST's start (`component_post_timeout` \
     bounds the wait for its first line); then it is cut off, keeping what was sent",
);
pub const ALLOW: Spec = Spec {
    shown_default: Some("everyone"),
    ..spec(
        "component_post_allow",
        "allow",
        Type::Jids,
        "who may talk to the bot: bare JIDs and domains, e.g. `{ \"example.com\", \"alice@other.example\" }` \
         (a domain, not its subdomains); anyone else's messages and IQs get `auth`/`forbidden` and are not \
         POSTed (see [Who may talk](#who-may-talk-to-the-bot))",
    )
};
pub const NAME: Spec = Spec {
    shown_default: Some("none: disco shows the domain"),
    ..spec(
        "component_post_name",
        "name",
        Type::Text,
        "the bot's display name: its vCard's `FN` and its disco#info identity (see [A face](#a-face))",
    )
};
pub const AVATAR: Spec = Spec {
    shown_default: Some("none"),
    ..spec(
        "component_post_avatar",
        "avatar",
        Type::Path,
        "the bot's picture: a PNG, JPEG, GIF or WebP file of at most 128 KiB (relative to the \
         config file's folder), in its vCard and, by hash, in its presences; unreadable, the load fails",
    )
};
pub const PUSH_TOKEN: Spec = Spec {
    shown_default: Some("none: endpoint off, unless a public key is set"),
    ..spec(
        "component_push_token",
        "push_token",
        Type::Token,
        "`Authorization: Bearer <token>` (compared in constant time), or a Standard Webhooks \
         signature made with it as the secret (`whsec_…` or plain); at least 16 characters",
    )
};
pub const PUSH_PUBLIC_KEY: Spec = Spec {
    shown_default: Some("none"),
    ..spec(
        "component_push_public_key",
        "push_public_key",
        Type::Token,
        "an ed25519 public key, `whpk_…`: the push endpoint also accepts pushes signed \
         with its key (Standard Webhooks `v1a`), and is on with this alone",
    )
};
pub const PUSH_RATE: Spec = spec(
    "component_push_rate",
    "push_rate",
    Type::Rate(10.0),
    "pushes per second (burst as many); beyond: 429 with `Retry-After: 1`",
);
pub const PUSH_TIMEOUT: Spec = spec(
    "component_push_timeout",
    "push_timeout",
    Type::Seconds(30.0),
    "seconds a pushed IQ get/set waits for its answer; then 504",
);
pub const PUSH_AUTH_FAILURES: Spec = spec(
    "component_push_auth_failures",
    "push_auth_failures",
    Type::Count {
        default: 10,
        min: 1,
    },
    "failed authorisations a client address may make per minute; past it the address gets \
     429 until its minute is over, before any credential is checked (behind a reverse \
     proxy, set Prosody's `trusted_proxies` so that addresses are the clients')",
);
pub const PUSH_MAX_SIZE: Spec = spec(
    "component_push_max_size",
    "push_max_size",
    Type::Count {
        default: 64 * 1024,
        min: 1,
    },
    "bytes of request body; larger: 413",
);

/// Every option, in the README's order.
pub const ALL: [&Spec; 41] = [
    &URL,
    &STANZAS,
    &TIMEOUT,
    &CONNECT_TIMEOUT,
    &MAX_INFLIGHT,
    &QUEUE_SIZE,
    &QUEUE_BYTES,
    &CONVERSATION_QUEUE,
    &RETRIES,
    &ORDERING,
    &SECRET,
    &SIGNING_KEY,
    &HEADERS,
    &CA_FILE,
    &TLS_VERIFY,
    &MAX_RESPONSE,
    &DURABLE,
    &MAX_AGE,
    &DURABLE_LIMIT,
    &DURABLE_BYTES,
    &DEAD_LETTER_AGE,
    &ROOMS,
    &ROOM_MENTIONS_ONLY,
    &MAX_ROOMS,
    &NICK,
    &COMMANDS,
    &COMMAND_TIMEOUT,
    &UPLOAD_SERVICE,
    &MAX_UPLOAD,
    &TYPING,
    &STREAM_INTERVAL,
    &STREAM_TIMEOUT,
    &ALLOW,
    &NAME,
    &AVATAR,
    &PUSH_TOKEN,
    &PUSH_PUBLIC_KEY,
    &PUSH_RATE,
    &PUSH_TIMEOUT,
    &PUSH_AUTH_FAILURES,
    &PUSH_MAX_SIZE,
];

/// A default as the shim hands it to `module:get_option_*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    None,
    Number(f64),
    Flag(bool),
    Word(&'static str),
    Words(&'static [&'static str]),
}

impl Spec {
    /// Which `module:get_option_*` reads it, by the shim's name for it.
    pub fn reader(&self) -> &'static str {
        match self.kind {
            Type::Url | Type::Choice(_) | Type::Token | Type::Text => "string",
            Type::Kinds(_) => "set",
            Type::Seconds(_) => "duration",
            Type::Count { .. } | Type::Rate(_) => "number",
            Type::Flag(_) => "boolean",
            Type::Secrets | Type::Rooms | Type::Commands | Type::Jids => "array",
            Type::Headers => "table",
            Type::Path => "path",
        }
    }

    pub fn default(&self) -> Default {
        match self.kind {
            Type::Kinds(kinds) => Default::Words(kinds),
            Type::Seconds(s) | Type::Rate(s) => Default::Number(s),
            Type::Count { default, .. } => Default::Number(default as f64),
            Type::Flag(on) => Default::Flag(on),
            Type::Choice(words) => Default::Word(words[0]),
            Type::Url
            | Type::Secrets
            | Type::Headers
            | Type::Path
            | Type::Token
            | Type::Rooms
            | Type::Commands
            | Type::Jids
            | Type::Text => Default::None,
        }
    }

    /// The default as the README shows it.
    fn shown(&self) -> String {
        if let Some(shown) = self.shown_default {
            return shown.to_owned();
        }
        match (self.kind, self.default()) {
            (Type::Url, _) => "required".into(),
            (_, Default::None) => "none".into(),
            (_, Default::Number(n)) => format!("`{n}`"),
            (_, Default::Flag(on)) => format!("`{on}`"),
            (_, Default::Word(word)) => format!("`\"{word}\"`"),
            (_, Default::Words(words)) => {
                let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
                format!("`{{ {} }}`", quoted.join(", "))
            }
        }
    }
}

/// The README table of the options whose names start with `prefix`.
pub fn markdown_table(prefix: &str) -> String {
    let mut table = String::from("| option | default | meaning |\n|---|---|---|\n");
    for option in ALL.iter().filter(|o| o.name.starts_with(prefix)) {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            option.name,
            option.shown(),
            option.help
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.key, b.key);
            }
        }
    }

    /// The README's option tables are made from this list: run
    /// `make readme-options` after changing an option.
    #[test]
    fn readme_tables_are_made_from_the_declarations() {
        let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let mut readme = std::fs::read_to_string(readme_path).unwrap();
        let update = std::env::var_os("UPDATE_README").is_some();
        for prefix in ["component_post_", "component_push_"] {
            let table = markdown_table(prefix);
            let start = readme
                .find(&format!(
                    "| option | default | meaning |\n|---|---|---|\n| `{prefix}"
                ))
                .unwrap_or_else(|| panic!("README has no table of {prefix}* options"));
            let end = readme[start..]
                .find("\n\n")
                .map_or(readme.len(), |e| start + e + 1);
            if update {
                readme.replace_range(start..end, &table);
            } else {
                assert_eq!(
                    readme[start..end],
                    table,
                    "README's {prefix}* table is out of date: run `make readme-options`"
                );
            }
        }
        if update {
            std::fs::write(readme_path, readme).unwrap();
        }
    }
}
