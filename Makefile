# mod_component_http: `make` builds the plugin folder, `make run` tries it,
# `make test` runs every test, `make bench` measures. See README.md.

LUA ?= 5.4
PLUGIN := build/mod_component_http
PYTHON ?= python3

# rustup installs cargo here; make it findable from a plain root shell too.
export PATH := $(HOME)/.cargo/bin:$(PATH)

lua_feature_5.1 := lua51
lua_feature_5.3 := lua53
lua_feature_5.4 := lua54
lua_feature_luajit := luajit
LUA_FEATURE := $(lua_feature_$(LUA))
# The specs run on each (prosody-test/run_all.py names their interpreters).
SPEC_LIBS := $(foreach v,5.1 5.3 5.4 luajit,build/lua-$(v)/component_http.so)
ifeq ($(LUA_FEATURE),)
$(error LUA must be one of 5.1, 5.3, 5.4, luajit)
endif

# Debian packages the tests and `make run` need: Prosody 0.12 and what
# Prosody 13 needs too (the same dependencies), the Lua headers that
# `luarocks make` compiles against, every Lua the library is built for
# (the busted specs run on each), and the example bots' languages.
DEB_PACKAGES := prosody lua5.4 liblua5.4-dev lua5.1 lua5.3 luajit lua-busted lua-event lua-dbi-sqlite3 lua-dbi-postgresql \
	luarocks python3 python3-cryptography python3-venv ca-certificates openssl php-cli nodejs
# The PostgreSQL server, for the SQL storage tests (which start a cluster of
# their own), without its recommends: no sysstat, cron or mail server.
DEB_PACKAGES_BARE := postgresql

# Prosody 13 beside Debian 12's 0.12: Debian 13's version, from
# bookworm-backports, unpacked into a cache folder (see prosody-test/fetch-prosody13;
# prosody-test/harness/env.py runs it from there).
PROSODY13_DEB := 13.0.1-1~bpo12+1
PROSODY13 := .cache/prosody-13.0.1

.PHONY: all build install rock deps deps-examples deps-bench deps-clients deps-profile deps-fuzz fuzz chaos prosody13 run test test-fresh bench profile soak test-rust test-lua test-e2e readme-options clean

all: build

# The module's Lua files beside its main file (module:require'd).
LIBS := push durable rooms menu shell
PLUGIN_FILES := mod_component_http.lua $(LIBS:%=%.lib.lua) component_http.so

build: $(PLUGIN_FILES:%=$(PLUGIN)/%)

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

$(PLUGIN)/mod_component_http.lua: lua/mod_component_http.lua Cargo.toml
	mkdir -p $(PLUGIN)
	sed 's/@VERSION@/$(VERSION)/' $< > $@.tmp && mv -f $@.tmp $@

$(PLUGIN)/%.lib.lua: lua/%.lib.lua
	install -D -m 644 $< $@

# `install` writes a new file and renames it over the old one: a running
# Prosody that has the old library mapped is never written into.
$(PLUGIN)/component_http.so: FORCE
	cargo build --release --no-default-features --features "module $(LUA_FEATURE)"
	install -D -m 755 target/release/libcomponent_http.so $@

FORCE:

# The library for one Lua, for the specs: build/lua-5.1/component_http.so, ...
# (cargo keeps each feature set's build, so switching between them is cheap).
build/lua-%/component_http.so: FORCE
	@test -n "$(lua_feature_$*)" || { echo "no Lua $*: one of 5.1, 5.3, 5.4, luajit"; exit 1; }
	cargo build --release --no-default-features --features "module $(lua_feature_$*)"
	install -D -m 755 target/release/libcomponent_http.so $@

ROCKSPEC := mod_component_http-$(VERSION)-1.rockspec

# A binary rock for `prosodyctl install ./FILE.rock` on a server without
# Rust. Built for Lua 5.4, the Lua of Prosody 0.12 on Debian.
rock: build
	rm -rf build/rock build/*.rock
	luarocks --lua-version=5.4 make --pack-binary-rock $(ROCKSPEC) --tree build/rock
	mv mod_component_http-$(VERSION)-1.*.rock build/
	@ls build/*.rock

# make install PLUGIN_DIR=/usr/local/lib/prosody/modules
# Each file is written beside its target and renamed over it: a library
# that a running Prosody has loaded is never written into.
install: build
	@test -n "$(PLUGIN_DIR)" || { echo "usage: make install PLUGIN_DIR=<a directory in plugin_paths>"; exit 1; }
	mkdir -p $(PLUGIN_DIR)/mod_component_http
	for f in $(PLUGIN_FILES); do \
		cp $(PLUGIN)/$$f $(PLUGIN_DIR)/mod_component_http/.$$f.new && \
		mv -f $(PLUGIN_DIR)/mod_component_http/.$$f.new $(PLUGIN_DIR)/mod_component_http/$$f || exit 1; \
	done
	@echo "Installed into $(PLUGIN_DIR)/mod_component_http/"

# $(call apt_install,PACKAGES[,APT OPTIONS]): installs those not installed yet.
apt_install = missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing; \
	fi

deps:
	@$(call apt_install,$(DEB_PACKAGES))
	@$(call apt_install,$(DEB_PACKAGES_BARE),--no-install-recommends)
	@command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup"; exit 1; }

prosody13: $(PROSODY13)/usr/bin/prosody

# The example bots verify signatures with Standard Webhooks' own libraries,
# as a bot author would: the Python one from PyPI (standardwebhooks), in a
# venv that also sees Debian's Python packages, and the Node one from npm
# (standardwebhooks), with Debian's npm where Node came without one. The
# tests run the bots with them. The venv also holds slixmpp (PyPI), the
# client library the end-to-end tests use where a real client's XEP
# plugins matter (ad-hoc commands); they run with the venv's Python.
VENV := .cache/venv
NODE_PREFIX := .cache/node
STANDARDWEBHOOKS := 1.3.0
SLIXMPP := 1.17.0
deps-examples: $(VENV)/.standardwebhooks-$(STANDARDWEBHOOKS) $(VENV)/.slixmpp-$(SLIXMPP) \
	$(NODE_PREFIX)/.standardwebhooks-$(STANDARDWEBHOOKS)

$(VENV)/bin/python:
	$(PYTHON) -m venv --system-site-packages $(VENV)

$(VENV)/.standardwebhooks-$(STANDARDWEBHOOKS): | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q 'standardwebhooks==$(STANDARDWEBHOOKS)'
	touch $@

$(VENV)/.slixmpp-$(SLIXMPP): | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q 'slixmpp==$(SLIXMPP)'
	touch $@

$(NODE_PREFIX)/.standardwebhooks-$(STANDARDWEBHOOKS):
	@command -v npm >/dev/null || { $(call apt_install,npm); }
	npm install --prefix $(NODE_PREFIX) --no-audit --no-fund --loglevel=error 'standardwebhooks@$(STANDARDWEBHOOKS)'
	touch $@

$(PROSODY13)/usr/bin/prosody:
	prosody-test/fetch-prosody13 '$(PROSODY13_DEB)' $(PROSODY13)

# nginx plays the web service in `make bench`.
deps-bench: deps
	@$(call apt_install,nginx-light)

# The terminal XMPP clients to try `make run` as a user would (README,
# "Trying it"), and tmux to drive them from a script.
deps-clients:
	@$(call apt_install,profanity poezio tmux)

# valgrind counts instructions for `make profile`.
deps-profile: deps-bench
	@$(call apt_install,valgrind)

# Fuzzing: cargo-fuzz on a nightly toolchain (rustup's, beside stable).
# cargo-fuzz goes into .cache/, not ~/.cargo: what the project needs is
# installed by the project (and test-fresh's toolchain is read-only).
CARGO_FUZZ := .cache/cargo-fuzz/bin/cargo-fuzz
# cargo fuzz compiles libFuzzer, which is C++: g++ beside the C compiler.
deps-fuzz: $(CARGO_FUZZ)
	@$(call apt_install,g++)
	@rustup toolchain list | grep -q '^nightly' || { echo "Installing the nightly Rust toolchain"; \
		rustup toolchain install nightly --profile minimal; }

$(CARGO_FUZZ):
	cargo install --locked --root .cache/cargo-fuzz cargo-fuzz

# Every fuzz target (or those in FUZZ_TARGETS, comma-separated) for
# FUZZ_SECONDS each (default 10 minutes), from the committed seed corpora in
# fuzz/seeds/.
fuzz: deps-fuzz
	$(PYTHON) prosody-test/run_all.py fuzz $(or $(FUZZ_SECONDS),600)

# `make test` in a throwaway Debian 12 root made by debootstrap, where only
# what `make deps` installs is there: proves a fresh machine passes.
test-fresh:
	prosody-test/test-fresh

bench: deps-bench build
	cd prosody-test && $(PYTHON) bench.py

# Instructions per stanza by stage, counted by callgrind: figures that do
# not depend on how busy the machine is.
profile: deps-profile build
	cd prosody-test && $(PYTHON) profile.py

# Five minutes of steady load: does Prosody's memory level off?
soak: deps-bench build
	cd prosody-test && $(PYTHON) bench.py soak $(or $(SOAK_SECONDS),300)

# One fault run under steady load, a table per phase (prosody-test/chaos.py);
# `make test` runs its short version (test_chaos.py). PROSODY=13 for 13.
chaos: deps build $(if $(filter 13,$(PROSODY)),prosody13)
	cd prosody-test && $(PYTHON) chaos.py

# PROSODY=13 make run: the same on Prosody 13.
run: deps build $(if $(filter 13,$(PROSODY)),prosody13)
	$(PYTHON) prosody-test/run_local.py

test: deps deps-fuzz deps-examples build $(SPEC_LIBS) prosody13
	$(PYTHON) prosody-test/run_all.py

# One part each; PROSODY=0.12|13 and NETWORK_BACKEND=epoll|select|event
# choose where a single end-to-end test file runs, e.g.
#   cd prosody-test && PROSODY=13 ../.cache/venv/bin/python -m unittest -v test_contract
test-rust:
	$(PYTHON) prosody-test/run_all.py rust

test-lua: $(SPEC_LIBS) prosody13
	$(PYTHON) prosody-test/run_all.py lua

test-e2e: deps-examples build prosody13
	$(PYTHON) prosody-test/run_all.py e2e

# The README's option tables, made again from src/options.rs (where every
# option is declared); `make test` fails while they differ.
readme-options:
	UPDATE_README=1 cargo test --no-default-features --features "lua54 vendored" readme_tables

clean:
	cargo clean
	rm -rf build
