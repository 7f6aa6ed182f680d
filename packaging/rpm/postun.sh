# extrator (rpm %postun): the queue (/var/lib/extrator) and the spool are kept on removal; delete
# them by hand if they are no longer needed.
# Rebuild the journal's catalog without our file (it is gone on removal).
if [ "$1" = 0 ]; then
    journalctl --update-catalog >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
