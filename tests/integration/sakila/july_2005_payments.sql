-- The independent answer (MariaDB, raw Sakila tables): revenue and payment count per
-- customer for payments made in July 2005 (DATETIME values, read as UTC).
SELECT customer_id, SUM(amount) AS revenue, COUNT(*) AS payments
FROM payment
WHERE payment_date >= '2005-07-01 00:00:00' AND payment_date < '2005-08-01 00:00:00'
GROUP BY customer_id
