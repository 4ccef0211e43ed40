// Drives the wire endpoint as BI tools do through pgJDBC: metadata, a
// prepared statement with typed parameters, a refusal. Prints one line per
// check; the Go test reads them. Run: java -cp postgresql.jar JdbcClient.java PORT USER TOKEN
import java.sql.*;
import java.util.*;

public class JdbcClient {
  public static void main(String[] a) throws Exception {
    Properties p = new Properties();
    p.setProperty("user", a[1]);
    p.setProperty("password", a[2]);
    p.setProperty("options", "-c airlock.purpose=fraud_detection");
    try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + a[0] + "/airlock", p)) {
      DatabaseMetaData md = c.getMetaData();
      System.out.println("product " + md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
      System.out.println("catalogs " + names(md.getCatalogs(), "TABLE_CAT"));
      System.out.println("schemas " + names(md.getSchemas(), "TABLE_SCHEM"));
      System.out.println("tables " + names(md.getTables(null, "public", "%", new String[]{"TABLE"}), "TABLE_NAME"));
      StringBuilder cols = new StringBuilder();
      try (ResultSet rs = md.getColumns(null, "public", "transactions", "%")) {
        while (rs.next()) cols.append(rs.getString("COLUMN_NAME")).append(':').append(rs.getString("TYPE_NAME")).append(' ');
      }
      System.out.println("columns " + cols.toString().trim());
      System.out.println("pks " + names(md.getPrimaryKeys(null, "public", "transactions"), "COLUMN_NAME"));
      System.out.println("imported " + names(md.getImportedKeys(null, "public", "transactions"), "FKCOLUMN_NAME"));
      try (PreparedStatement ps = c.prepareStatement(
          "SELECT country, count(*) AS n FROM transactions WHERE merchant <> ? AND mcc <> ? AND day >= ? AND day < ? AND is_fraud = ? GROUP BY country ORDER BY country")) {
        ps.setString(1, "nowhere");
        ps.setString(2, "0000");
        ps.setDate(3, java.sql.Date.valueOf("2024-01-01"));
        ps.setDate(4, java.sql.Date.valueOf("2030-01-01"));
        ps.setBoolean(5, false);
        int rows = 0;
        try (ResultSet rs = ps.executeQuery()) { while (rs.next()) rows++; }
        System.out.println("prepared " + rows);
      }
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM transactions WHERE day >= ?")) {
        ps.setDate(1, java.sql.Date.valueOf("2024-01-01"));
        try (ResultSet rs = ps.executeQuery()) { rs.next(); System.out.println("date-param " + (rs.getLong(1) > 0)); }
      }
      System.out.println("typeinfo " + names(md.getTypeInfo(), "TYPE_NAME").contains("numeric"));
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) {
        rs.next();
        System.out.println("select1 " + rs.getInt(1));
      }
      try (Statement s = c.createStatement()) {
        s.executeQuery("SELECT iban FROM transactions");
        System.out.println("refusal none");
      } catch (SQLException e) {
        System.out.println("refusal " + e.getSQLState() + " " + e.getMessage().replace('\n', ' '));
      }
    }
    // Row-level access under a list rule: integer and decimal parameters.
    Properties q = new Properties();
    q.setProperty("user", a[3]);
    q.setProperty("password", a[4]);
    q.setProperty("options", "-c airlock.purpose=care_quality");
    try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + a[0] + "/airlock", q);
         PreparedStatement ps = c.prepareStatement("SELECT diagnosis, cost FROM visits WHERE cost > ? ORDER BY cost, diagnosis LIMIT ?")) {
      ps.setBigDecimal(1, new java.math.BigDecimal("100.50"));
      ps.setInt(2, 5);
      int rows = 0;
      boolean above = true;
      try (ResultSet rs = ps.executeQuery()) {
        while (rs.next()) { rows++; above &= rs.getBigDecimal(2).compareTo(new java.math.BigDecimal("100.50")) > 0; }
      }
      System.out.println("typed-params " + rows + " " + above);
    }
  }

  static String names(ResultSet rs, String col) throws SQLException {
    List<String> out = new ArrayList<>();
    while (rs.next()) out.add(rs.getString(col));
    rs.close();
    return String.join(",", out);
  }
}
