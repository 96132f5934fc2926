"""ConsumedIOs count what a statement really read (documents, index entries, revisions),
through pyqldb's cursor API."""


def consumed_reads(driver, statement, *parameters):
    def read(tx):
        cursor = tx.execute_statement(statement, *parameters)
        list(cursor)
        # pyqldb reports no IO usage (None) for a statement that read nothing.
        return (cursor.get_consumed_ios() or {"ReadIOs": 0})["ReadIOs"]
    return driver.execute_lambda(read)


def test_read_ios_follow_the_access_path(server, ledger):
    with server.driver(ledger) as driver:
        driver.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Car"))
        driver.execute_lambda(lambda tx: tx.execute_statement("CREATE INDEX ON Car (VIN)"))
        driver.execute_lambda(lambda tx: tx.execute_statement(
            "INSERT INTO Car ?", [{"VIN": f"v{i}"} for i in range(10)]))
        # A scan visits every document, whatever it returns.
        assert consumed_reads(driver, "SELECT * FROM Car AS c WHERE c.other = 1") == 10
        # An index lookup probes once and fetches the one match.
        assert consumed_reads(driver, "SELECT * FROM Car AS c WHERE c.VIN = ?", "v3") == 2
        assert consumed_reads(driver, "SELECT VALUE 1 FROM <<1, 2>> AS x") == 0
