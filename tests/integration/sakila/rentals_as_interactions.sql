-- Sakila rentals as CRM interactions (MariaDB), for the CRM stand-in's crm.db:
-- one rental = one interaction of type 'rental'; duration = return - rental time in
-- seconds (null while not returned); the agent is the staff member; no satisfaction score.
SELECT CONCAT('R', r.rental_id) AS interaction_id,
       r.customer_id,
       'rental' AS interaction_type,
       CAST(r.rental_date AS CHAR) AS interaction_date,
       TIMESTAMPDIFF(SECOND, r.rental_date, r.return_date) AS duration,
       NULL AS satisfaction_score,
       CASE WHEN r.return_date IS NULL THEN 'open' ELSE 'closed' END AS resolution_status,
       CONCAT('S', r.staff_id) AS agent_id,
       'store' AS department
FROM rental r
