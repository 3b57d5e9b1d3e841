# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: {{ command }}
# shellcheck shell=bash disable=SC2034,SC2016
# Sourceable role table: PIKA_ROLE_IDS lists the roles; each PIKA_ROLE_* array is keyed by role ID.
PIKA_ROLE_IDS=({% for id in ids %}{% if !loop.first %} {% endif %}{{ id }}{% endfor %})
{%- for table in tables %}
declare -gA {{ table.name }}=({% for (key, value) in table.entries %}{% if !loop.first %} {% endif %}[{{ key }}]={{ value }}{% endfor %})
{%- endfor %}
