import java.sql.*;
import java.util.Properties;

/** Loads the VFS extension, opens args[1] (a JDBC URL) and prints each query's rows. */
public class VfsQuery {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("enable_load_extension", "true");
        try (Connection m = DriverManager.getConnection("jdbc:sqlite::memory:", p);
             Statement s = m.createStatement()) {
            s.execute("SELECT load_extension('" + args[0].replace("'", "''") + "')");
        }
        try (Connection c = DriverManager.getConnection(args[1])) {
            for (int i = 2; i < args.length; i++) {
                try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(args[i])) {
                    int n = r.getMetaData().getColumnCount();
                    while (r.next()) {
                        StringBuilder b = new StringBuilder();
                        for (int j = 1; j <= n; j++) {
                            if (j > 1) b.append('|');
                            b.append(r.getString(j));
                        }
                        System.out.println(b);
                    }
                }
            }
        }
    }
}
