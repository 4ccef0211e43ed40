"""Drives the wire endpoint as notebooks do: SQLAlchemy connect and
inspect, pandas.read_sql of an aggregate, psycopg2 cursors. Prints one line
per check; the Go test reads them. argv: port user token."""
import sys
import pandas as pd
import psycopg2
import sqlalchemy as sa

port, user, token = sys.argv[1], sys.argv[2], sys.argv[3]
url = sa.engine.URL.create("postgresql+psycopg2", username=user, password=token, host="127.0.0.1", port=int(port), database="airlock")
engine = sa.create_engine(url, connect_args={"options": "-c airlock.purpose=fraud_detection"})
with engine.connect() as c:
    print("version", ".".join(map(str, c.dialect.server_version_info)))
    insp = sa.inspect(c)
    print("tables", ",".join(insp.get_table_names()))
    print("columns", " ".join(f"{x['name']}:{x['type']}" for x in insp.get_columns("transactions")))
    df = pd.read_sql(sa.text("SELECT country, count(*) AS n FROM transactions GROUP BY country ORDER BY country"), c)
    print("pandas", len(df), ",".join(df.columns))
conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=token, dbname="airlock", options="-c airlock.purpose=fraud_detection")
cur = conn.cursor()
cur.execute("SELECT country, count(*) FROM transactions WHERE mcc <> %s GROUP BY country", ("0000",))
print("unnamed", len(cur.fetchall()))
named = conn.cursor(name="airlock_named")
named.itersize = 2
named.execute("SELECT country, count(*) FROM transactions GROUP BY country ORDER BY country")
first = named.fetchmany(2)
rest = named.fetchall()
print("named", len(first), len(first) + len(rest))
named.close()
conn.rollback()
with engine.connect() as c:
    chunks = list(pd.read_sql(sa.text("SELECT country, count(*) AS n FROM transactions GROUP BY country ORDER BY country"), c.execution_options(stream_results=True), chunksize=2))
    print("chunks", len(chunks), sum(len(x) for x in chunks))
