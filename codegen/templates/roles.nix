# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: {{ command }}
{%- if args.is_empty() %}
{}: {
{%- else %}
{
{%- for arg in args %}
  {{ arg }},
{%- endfor %}
}: {
{%- endif %}
{%- for role in roles %}
  {{ role.key }} = {
{%- for (name, value) in role.fields %}
    {{ name }} = {{ value }};
{%- endfor %}
  };
{%- endfor %}
}
