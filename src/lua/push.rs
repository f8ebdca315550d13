//! A host's push [`Endpoint`] as Lua userdata, with the clocks read here.

use std::time::Instant;

use mlua::{LuaString, UserData, UserDataMethods};

use super::effect::effects_to_lua;
use crate::clock::unix_secs;
use crate::push::{Credentials, Endpoint, Pushed};

/// The client's address, then the Authorization, webhook-id,
/// webhook-timestamp, webhook-signature and Content-Type headers, and the
/// body.
type Push = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    LuaString,
);

impl UserData for Endpoint {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // nil when the push may go on; else the HTTP status, why, and the
        // seconds for Retry-After (or nil).
        methods.add_method_mut(
            "admit",
            |_, this, (address, authorization, id, timestamp, signature, content_type, body): Push| {
                let credentials = Credentials {
                    authorization: authorization.as_deref(),
                    webhook_id: id.as_deref(),
                    webhook_timestamp: timestamp.as_deref(),
                    webhook_signature: signature.as_deref(),
                };
                let unix = unix_secs();
                let body = body.as_bytes();
                let content_type = content_type.as_deref();
                Ok(
                    match this.admit(&address, &credentials, content_type, &body, Instant::now(), unix) {
                        Ok(()) => (None, None, None),
                        Err(e) => (Some(e.status), Some(e.message), e.retry_after),
                    },
                )
            },
        );
        // What a push admitted does, as effects, then `{ id =, to =, waits = }`
        // (waits: an IQ get or set, answered when its answer comes), for a
        // file `{ id =, waits = seconds }` (answered when it is uploaded),
        // or for a menu `{ commands = }`; or no effects and `{ status =,
        // error = }`.
        methods.add_method_mut(
            "push",
            |lua, this, (content_type, body): (Option<String>, LuaString)| {
                let answer = lua.create_table_with_capacity(0, 2)?;
                let effects =
                    match this.push(content_type.as_deref(), &body.as_bytes(), Instant::now()) {
                        Ok((effects, Pushed::Stanza { id, to, waits })) => {
                            answer.raw_set("id", id)?;
                            answer.raw_set("to", to)?;
                            answer.raw_set("waits", waits)?;
                            effects
                        }
                        Ok((effects, Pushed::Menu { commands })) => {
                            answer.raw_set("commands", commands)?;
                            effects
                        }
                        Ok((effects, Pushed::Upload { id, seconds })) => {
                            answer.raw_set("id", id)?;
                            answer.raw_set("waits", seconds)?;
                            effects
                        }
                        Err(e) => {
                            answer.raw_set("status", e.status)?;
                            answer.raw_set("error", e.message)?;
                            Vec::new()
                        }
                    };
                Ok((effects_to_lua(lua, &effects)?, answer))
            },
        );
        // A pushed IQ handed over by a reload: its answer is awaited here.
        methods.add_method_mut("expect", |_, this, (id, to): (String, String)| {
            Ok(this.iqs.expect(&id, &to))
        });
        // A pushed IQ no longer waits (timed out).
        methods.add_method_mut("forget", |_, this, id: String| {
            this.iqs.forget(&id);
            Ok(())
        });
        // Seconds a pushed IQ waits for its answer.
        methods.add_method("timeout", |_, this, ()| Ok(this.timeout().as_secs_f64()));
    }
}
