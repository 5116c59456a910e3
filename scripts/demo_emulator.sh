# Sourced by scripts/demo.sh and scripts/mage_demo.sh: the demo's emulator, started one way.
#
# start_demo_emulator QBO_RS WORKDIR
#   Starts `QBO_RS emulator` with the demo's data set (seed 42: 5000 invoices, 400 customers,
#   200 items) on a free port, waits for the `export QBO_*` lines it prints and runs them. Sets
#   emu_pid (stop it in the caller's EXIT trap); its log is WORKDIR/emulator.log.
start_demo_emulator() {
    local qbo="$1" work="$2"
    "$qbo" emulator --port 0 --seed 42 --invoices 5000 --customers 400 --items 200 \
        >"$work/env" 2>"$work/emulator.log" &
    emu_pid=$!
    for _ in $(seq 1 100); do
        [ "$(grep -c '^export QBO_' "$work/env" 2>/dev/null || true)" -ge 7 ] && break
        sleep 0.1
    done
    [ "$(grep -c '^export QBO_' "$work/env" || true)" -ge 7 ] || { echo "emulator did not start:"; cat "$work/emulator.log"; return 1; }
    . "$work/env"
}
