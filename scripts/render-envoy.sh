#!/bin/sh
# Render an Envoy config template: replace every ${TG_NAME} placeholder with the value of
# the environment variable TG_NAME. When TG_CP_CA is set, the lines marked "#tls: " (TLS to
# the control plane) are turned on first; otherwise they stay comments.
#
#   scripts/render-envoy.sh <template> <out>
#
# Fails (exit 1, naming the variables) when a placeholder's variable is unset or empty, or
# when anything that looks like a placeholder is left outside a YAML comment. Pure POSIX sh
# and sed, because it also runs inside the official envoyproxy/envoy image (no envsubst,
# no bash). The output may hold the proxy secret, so it is written with mode 600.
# shellcheck disable=SC2016 # literal ${TG_...} in sed scripts and patterns is the point
set -eu

me=render-envoy.sh
die() {
    printf '%s: %s\n' "$me" "$*" >&2
    exit 1
}

[ "$#" -eq 2 ] || die "usage: $me <template> <out>"
template=$1
out=$2
[ -f "$template" ] || die "template not found: $template"
[ -r "$template" ] || die "template not readable: $template"

umask 077
tmp="$out.tmp.$$"
src="$out.src.$$"
trap 'rm -f "$tmp" "$src"' EXIT
trap 'exit 1' INT TERM HUP
if [ -n "${TG_CP_CA:-}" ]; then
    sed 's/^\([[:space:]]*\)#tls: /\1/' "$template" >"$src" || die "cannot write $src"
else
    cat "$template" >"$src" || die "cannot write $src"
fi

# Every distinct placeholder name outside comments, one per line: put each placeholder on
# a line of its own (a literal newline in the replacement is the portable way), then keep
# those lines.
names=$(sed -e 's/^[[:space:]]*#.*//' "$src" | sed 's/\${TG_[A-Za-z0-9_]*}/\
&\
/g' | sed -n 's/^\${\(TG_[A-Za-z0-9_]*\)}$/\1/p')

seen=' '
missing=''
set --
for name in $names; do
    case $seen in *" $name "*) continue ;; esac
    seen="$seen$name "
    # $name matched [A-Za-z0-9_]* above, so this eval only reads a variable.
    eval "is_set=\${$name+set} value=\${$name-}"
    if [ -z "$is_set" ] || [ -z "$value" ]; then
        missing="$missing $name"
        continue
    fi
    case $value in
        *'
'*) die "$name contains a newline; a placeholder value must be one line" ;;
        *'${TG_'*) die "$name contains '\${TG_'; a value cannot itself be a placeholder" ;;
    esac
    # Escape what sed's replacement treats specially: backslash, the delimiter, &.
    escaped=$(printf '%s\n' "$value" | sed 's/[\\|&]/\\&/g')
    set -- "$@" -e "s|\\\${$name}|$escaped|g"
done

if [ -n "$missing" ]; then
    die "unset or empty variable(s) used by $template:$missing (set them in the environment)"
fi

if [ "$#" -gt 0 ]; then
    sed "$@" "$src" >"$tmp" || die "cannot write $tmp"
else
    cat "$src" >"$tmp" || die "cannot write $tmp"
fi

# Anything placeholder-like left outside a comment (a typo such as ${TG_PORT-1} or an
# unclosed ${TG_X) would reach Envoy as literal text: refuse it. Comments may mention
# ${TG_*} freely.
left=$(sed -e 's/^[[:space:]]*#.*//' -e 's/[[:space:]]#.*//' "$tmp" | sed -n '/\${TG_/{=;p;}')
if [ -n "$left" ]; then
    die "placeholders left unrendered in $template (line number, then the line):
$left"
fi

mv -f "$tmp" "$out" || die "cannot write $out"
rm -f "$src"
trap - EXIT
