# extrator (rpm %post): user, directories, and start only once configured. $1: 1 install, 2 upgrade.
# Users, groups, directories and permissions of the privilege model; moves the ERP's accounts of
# older releases from the group extrator to extrator-entrada.
/usr/lib/extrator/migrate-layout || :
# The journal's message catalog: `journalctl -x` explains each event in pt-BR.
journalctl --update-catalog >/dev/null 2>&1 || :
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if grep -Eq '^[[:space:]]*url[[:space:]]*=.*api[.]exemplo[.]invalid' /etc/extrator/extrator.toml; then
        echo "extrator: edite /etc/extrator/extrator.toml (api.url e [api.auth]), valide com"
        echo "          'extrator check' e inicie com 'systemctl enable --now extrator'."
    elif [ "$1" -ge 2 ]; then
        systemctl try-restart extrator.service >/dev/null 2>&1 || :
    else
        systemctl enable --now extrator.service >/dev/null 2>&1 || :
    fi
fi
