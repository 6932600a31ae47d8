-- A login storm: every request is a correct password login (one argon2 verification each).
wrk.method = "POST"
wrk.body = '{"email":"storm@example.com","password":"correct horse battery staple"}'
wrk.headers["Content-Type"] = "application/json"
