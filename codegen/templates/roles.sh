# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: {{ command }}
# {{ sha256_line }}
# shellcheck shell=bash disable=SC2034,SC2016
# Sourceable role table: PIKA_ROLE_IDS lists the roles; each PIKA_ROLE_<KEY> array (roles.toml key
# in upper snake case) is keyed by role ID. Lists are space separated; the user is
# name:uid:group:gid, a mount name:path:ro|rw[:optional], instance config key=value.
PIKA_ROLE_IDS=({% for id in ids %}{% if !loop.first %} {% endif %}{{ id }}{% endfor %})
{%- for (name, entries) in tables %}
declare -gA PIKA_ROLE_{{ name }}=({{ entries }})
{%- endfor %}
