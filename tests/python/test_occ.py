"""Serializability through pyqldb against the real `quill serve` binary: whatever a transaction
read (by index or by scan) and a transaction committed after it started changed makes its
CommitTransaction fail with OccConflictException, whether it wrote something or nothing.

The four conflict tests mirror pyqldb's own integration test `test_occ_exception_is_thrown`: a
driver without retries reads, another lambda on the same driver commits a change meanwhile."""

import random
import threading

import pytest
from botocore.exceptions import ClientError
from pyqldb.config.retry_config import RetryConfig
from pyqldb.errors import is_occ_conflict_exception


def setup_accounts(server, ledger, accounts):
    """Table `Acct` indexed on `id`, holding `accounts` ({id: balance}), and an empty `Audit`."""
    with server.driver(ledger) as driver:
        def create(txn):
            txn.execute_statement("CREATE TABLE Acct")
            txn.execute_statement("CREATE INDEX ON Acct (id)")
            txn.execute_statement("CREATE TABLE Audit")
        driver.execute_lambda(create)
        driver.execute_lambda(lambda txn: txn.execute_statement(
            "INSERT INTO Acct ?", [{"id": key, "bal": balance} for key, balance in accounts.items()]))


def withdraw_meanwhile(driver):
    """`UPDATE Acct SET bal = bal - 1 WHERE id = 'A'`, committed by another transaction."""
    driver.execute_lambda(lambda txn: txn.execute_statement("UPDATE Acct SET bal = bal - 1 WHERE id = 'A'"))


def assert_occ_conflict(server, ledger, read, write_elsewhere):
    """Runs `read`, lets a concurrent withdrawal commit, optionally inserts into another table,
    and expects the commit to fail with OccConflictException."""
    setup_accounts(server, ledger, {"A": 10, "B": 10})
    with server.driver(ledger, retry_config=RetryConfig(retry_limit=0)) as driver:
        def body(txn):
            assert list(txn.execute_statement(read)) != []
            withdraw_meanwhile(driver)
            if write_elsewhere:
                txn.execute_statement("INSERT INTO Audit ?", {"checked": "A"})

        with pytest.raises(ClientError) as error:
            driver.execute_lambda(body)
        assert is_occ_conflict_exception(error.value), error.value.response
        assert error.value.response["Error"]["Code"] == "OccConflictException"
        audits = driver.execute_lambda(lambda txn: list(txn.execute_statement("SELECT * FROM Audit")))
        assert audits == []


def test_an_indexed_read_then_a_write_elsewhere_conflicts(server, ledger):
    assert_occ_conflict(server, ledger, "SELECT bal FROM Acct WHERE id = 'A'", write_elsewhere=True)


def test_a_scan_then_a_write_elsewhere_conflicts(server, ledger):
    assert_occ_conflict(server, ledger, "SELECT bal FROM Acct", write_elsewhere=True)


def test_an_indexed_read_only_transaction_conflicts(server, ledger):
    assert_occ_conflict(server, ledger, "SELECT bal FROM Acct WHERE id = 'A'", write_elsewhere=False)


def test_a_scanning_read_only_transaction_conflicts(server, ledger):
    assert_occ_conflict(server, ledger, "SELECT VALUE bal FROM Acct", write_elsewhere=False)


def test_a_read_only_transaction_whose_reads_are_unchanged_commits(server, ledger):
    setup_accounts(server, ledger, {"A": 10, "B": 10})
    with server.driver(ledger, retry_config=RetryConfig(retry_limit=0)) as driver:
        def body(txn):
            [row] = list(txn.execute_statement("SELECT bal FROM Acct WHERE id = 'B'"))
            withdraw_meanwhile(driver)  # another document
            return row["bal"]

        assert driver.execute_lambda(body) == 10


def test_concurrent_transfers_and_write_skew_bait_keep_every_invariant(server, ledger):
    """Clients on their own drivers move money between accounts and withdraw from X into SX or
    from Y into SY, each only while the pair's X + Y stays non-negative (two withdrawals from
    one pair read both sides and write disjoint documents: the write skew), and audit
    read-only. The total never changes, no audit
    sees a broken invariant, and X + Y never goes negative."""
    accounts = {"X0": 30, "Y0": 30, "X1": 30, "Y1": 30, "SX": 0, "SY": 0}
    total = sum(accounts.values())
    setup_accounts(server, ledger, accounts)
    keys = sorted(accounts)
    audits = []
    errors = []
    outcomes = {"committed": 0, "conflicts": 0}
    lock = threading.Lock()

    def balance(txn, key):
        [row] = list(txn.execute_statement("SELECT bal FROM Acct WHERE id = ?", key))
        return row["bal"]

    def set_balance(txn, key, value):
        txn.execute_statement("UPDATE Acct SET bal = ? WHERE id = ?", value, key)

    def partner(key):
        return {"X": "Y", "Y": "X"}[key[0]] + key[1]

    def transfer(txn, rng):
        source, target = rng.sample(keys, 2)
        amount = rng.randint(1, 15)
        have, other = balance(txn, source), balance(txn, target)
        # Money leaves a pair only while the pair keeps a non-negative sum.
        available = have if source.startswith("S") else have + balance(txn, partner(source))
        if available >= amount:
            set_balance(txn, source, have - amount)
            set_balance(txn, target, other + amount)

    def guarded_withdraw(txn, rng):
        pair = rng.choice(["0", "1"])
        x, y = balance(txn, "X" + pair), balance(txn, "Y" + pair)
        amount = rng.randint(1, 40)
        if x + y >= amount:
            key, value = rng.choice([("X" + pair, x), ("Y" + pair, y)])
            # A sink per side: two withdrawals from one pair write disjoint documents.
            sink = "S" + key[0]
            set_balance(txn, key, value - amount)
            set_balance(txn, sink, balance(txn, sink) + amount)

    def audit(txn, _rng):
        rows = {row["id"]: row["bal"] for row in txn.execute_statement("SELECT id, bal FROM Acct")}
        return rows

    def client(seed):
        rng = random.Random(seed)
        try:
            with server.driver(ledger) as driver:
                for _ in range(30):
                    operation = rng.choice([transfer, guarded_withdraw, guarded_withdraw, audit])
                    try:
                        seen = driver.execute_lambda(lambda txn: operation(txn, rng))
                    except ClientError as error:
                        if not is_occ_conflict_exception(error):
                            raise
                        with lock:
                            outcomes["conflicts"] += 1
                        continue
                    with lock:
                        outcomes["committed"] += 1
                        if seen is not None:
                            audits.append(seen)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    print(f"driver bank: {outcomes}, {len(audits)} audits")
    assert outcomes["committed"] > 0 and audits
    with server.driver(ledger) as driver:
        final = driver.execute_lambda(lambda txn: audit(txn, None))
    for seen in audits + [final]:
        assert sorted(seen) == keys
        assert sum(seen.values()) == total, seen
        assert seen["X0"] + seen["Y0"] >= 0 and seen["X1"] + seen["Y1"] >= 0, seen
